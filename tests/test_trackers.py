"""--log-to and `bench export`: each entry and seed's curves and held-out metrics in TensorBoard's event files and
an MLflow store, read back with their own readers and equal to history.csv and quality.csv; a tracker that fails
leaves the run whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.evaluate.metrics import METRICS

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def write_suite(tiny_suite):
    """``write_suite(folder, head="") -> Path``: folder/tiny.toml, the tiny suite with two seeds, 6 steps evaluated
    every 3, no timing settings, an entry mse and a mix of l1 and mse, and the top-level lines ``head``."""

    def write(folder: Path, head: str = "") -> Path:
        path = folder / "tiny.toml"
        mix = {"name": "mix", "terms": [{"loss": "l1", "weight": 0.5}, {"loss": "mse", "weight": 0.5}]}
        path.write_text(
            tiny_suite(["mse", mix], head=head, seeds=[0, 1], train={"steps": 6, "eval_every": 3}, timing=None)
        )
        return path

    return write


def run_folder(out: Path) -> Path:
    (folder,) = (out / "tiny").iterdir()
    return folder


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, write_suite) -> Path:
    root = tmp_path_factory.mktemp("logged")
    assert (
        main(
            [
                "run",
                str(write_suite(root)),
                "--out",
                str(root / "out"),
                "--no-timing",
                "--no-progress",
                "--log-to",
                "tensorboard,mlflow",
            ]
        )
        == 0
    )
    return run_folder(root / "out")


def expected_scalars(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """From the tables: by training (``mse__seed0``), each tag's (step, value) points."""
    history, quality = pd.read_csv(folder / "history.csv"), pd.read_csv(folder / "quality.csv")
    expected = {}
    for _, row in quality[quality["kind"] == "trained"].iterrows():
        rows = history[(history["entry"] == row["entry"]) & (history["seed"] == row["seed"])]
        scalars = {
            f"history/{column}": [
                (int(step), float(value)) for step, value in zip(rows["step"], rows[column]) if pd.notna(value)
            ]
            for column in ("loss", "lr", "term_mse", "term_l1", "eval_psnr", "eval_ssim")
            if column in rows and rows[column].notna().any()
        }
        scalars.update(
            {
                f"heldout/{metric}": [(int(row["steps"]), float(row[metric]))]
                for metric in METRICS
                if metric in row and pd.notna(row[metric])
            }
        )
        expected[f"{row['entry']}__seed{row['seed']}"] = scalars
    return expected


def tensorboard_scalars(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for run in sorted((folder / "tensorboard").iterdir()):
        events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
        events.Reload()
        found[run.name] = {
            tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
        }
        assert events.Tags()["images"] == ["reconstructions"]
    return found


def mlflow_scalars(folder: Path, uri: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    found = {}
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["lossbench.run_dir"] == str(folder.resolve())
        assert run.data.params["formula"] in ("1*mse", "0.5*l1 + 0.5*mse")
        found[run.info.run_name] = {
            key: sorted((metric.step, metric.value) for metric in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics
        }
    assert len(runs) == len(found)  # one run per entry and seed, none twice
    return found


def default_uri(folder: Path) -> str:
    return f"sqlite:///{folder.resolve().parents[1] / 'mlflow.db'}"


def assert_same(found: dict, expected: dict, rel: float) -> None:
    assert found.keys() == expected.keys()
    for name, scalars in expected.items():
        assert found[name].keys() == scalars.keys(), name
        for tag, points in scalars.items():
            assert [step for step, _ in found[name][tag]] == [step for step, _ in points], (name, tag)
            assert [value for _, value in found[name][tag]] == pytest.approx([value for _, value in points], rel=rel)


def test_tensorboard_holds_each_training_s_curves_and_held_out_metrics(logged_run):
    assert_same(tensorboard_scalars(logged_run), expected_scalars(logged_run), rel=1e-6)  # stored as float32


def test_mlflow_holds_each_training_s_curves_held_out_metrics_and_settings(logged_run):
    assert_same(mlflow_scalars(logged_run, default_uri(logged_run)), expected_scalars(logged_run), rel=1e-12)


def test_bench_export_reproduces_what_log_to_wrote(logged_run):
    logged = tensorboard_scalars(logged_run), mlflow_scalars(logged_run, default_uri(logged_run))
    assert main(["export", str(logged_run), "--to", "tensorboard,mlflow"]) == 0
    assert (tensorboard_scalars(logged_run), mlflow_scalars(logged_run, default_uri(logged_run))) == logged


def test_an_unreachable_tracking_uri_is_reported_once_and_the_run_stays_complete(
    tmp_path, monkeypatch, capsys, write_suite
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    suite = write_suite(tmp_path, 'log_to = ["tensorboard", "mlflow"]\ntracking_uri = "http://127.0.0.1:9"')
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-timing", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("mlflow: export failed") == 1 and "retry with: python -m bench export" in out
    folder = run_folder(tmp_path / "out")
    for table in ("quality", "history", "summary", "per_image"):
        assert (folder / f"{table}.csv").is_file(), table
    quality = pd.read_csv(folder / "quality.csv")
    assert (quality["status"] == "ok").all() and len(quality[quality["kind"] == "trained"]) == 4
    assert_same(tensorboard_scalars(folder), expected_scalars(folder), rel=1e-6)  # the other tracker still wrote


@pytest.mark.parametrize(
    "suite_line, message",
    [
        ('log_to = ["wandb"]', "unknown tracker 'wandb'"),
        (
            'log_to = ["mlflow"]',
            'needs the mlflow package, which is not installed\n  fix: pip install -e ".[trackers]"',
        ),
    ],
)
def test_a_tracker_that_is_unknown_or_not_installed_is_an_input_error(
    suite_line, message, tmp_path, monkeypatch, capsys, write_suite
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "mlflow" else find_spec(name, *args)
    )
    suite = write_suite(tmp_path, suite_line)
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert f"{suite}: log_to" in err and message in err


def test_without_the_option_no_tracker_is_imported_or_written(tmp_path, write_suite):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    script = (
        "import sys\nfrom bench.cli import main\n"
        f"assert main(['run', {str(suite)!r}, '--out', {str(out)!r}, '--no-timing', '--no-progress']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard') "
        "or m == 'torch.utils.tensorboard'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert not (run_folder(out) / "tensorboard").exists() and not (out / "mlflow.db").exists()
