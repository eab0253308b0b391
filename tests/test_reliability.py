"""Failures stay inside their entry, interrupted runs resume to the same tables, bad suites never traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.errors import BenchInputError
from bench.losses import loss_names, register_loss
from bench.config.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = {"train_seconds", "seconds"}  # wall-clock columns: the only ones allowed to differ between runs


@pytest.fixture(scope="session")
def rel_suite(tiny_suite):
    """``rel_suite(steps, *entries, seeds=(0, 1), **train) -> str``: the tiny suite as these tests run it (two seeds,
    32 px wide models, six photographs of which two are held out, no timing settings), trained for ``steps``
    steps with ``train``'s other settings; ``entries`` are "name:loss"."""

    def text(steps: int, *entries: str, seeds=(0, 1), **train) -> str:
        tables = [{"name": name, "loss": loss} for name, loss in (entry.split(":") for entry in entries)]
        return tiny_suite(
            tables,
            name="rel",
            seeds=list(seeds),
            data={"scale": None, "images": 6, "eval_images": 2, "eval_crops": None},
            model={"width": 32},
            train={"steps": steps, "lr": 1e-3, "log_every": 5, "eval_every": 10, **train},
            timing=None,
        )

    return text


class _NaN(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, reconstruction, target):
        return torch.log(reconstruction - 2).mean()


def _ensure_nan_loss() -> None:
    """Registers (once per process) a loss that is NaN from the first step: log of a negative number."""
    if "test_nan" not in loss_names():
        register_loss("test_nan", "test only: always NaN")(lambda context: _NaN())


def test_diverging_middle_entry_fails_alone(tmp_path, capsys, rel_suite):
    _ensure_nan_loss()
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(6, "mse:mse", "diverges:test_nan", "l1:l1"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--seed", "0"]) == 1
    (folder,) = (tmp_path / "rel").iterdir()
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert quality.loc["diverges", "status"] == "failed" and "NaN" in quality.loc["diverges", "error"]
    assert quality.loc["diverges", "failed_step"] == 1
    assert (quality.loc[["mse", "l1"], "status"] == "ok").all()
    assert quality.loc[["mse", "l1"], "psnr"].notna().all()
    assert "failed entries: diverges" in capsys.readouterr().err
    summary = pd.read_csv(folder / "summary.csv").set_index("entry")
    assert summary.loc["diverges", "failed"] == 1


class _NaNGradient(torch.nn.Module):
    """Finite value, NaN gradient (sqrt's slope at 0), and an input check like piq's range assertion."""

    def forward(self, reconstruction, target):
        assert torch.isfinite(reconstruction).all(), "input has NaN"
        return (
            torch.sqrt((reconstruction - reconstruction.detach()).abs().sum()) + (reconstruction - target).abs().mean()
        )


def test_a_nan_gradient_behind_a_finite_loss_fails_its_entry_as_diverged(tmp_path, rel_suite):
    if "test_nan_gradient" not in loss_names():
        register_loss("test_nan_gradient", "test only: NaN gradient, finite value")(lambda context: _NaNGradient())
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(6, "nan_grad:test_nan_gradient", "mse:mse"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--seed", "0"]) == 1
    (folder,) = (tmp_path / "rel").iterdir()
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert quality.loc["nan_grad", "status"] == "failed" and quality.loc["nan_grad", "failed_step"] == 2
    assert quality.loc["nan_grad", "error"].startswith("the model's output (a NaN/inf gradient")
    assert quality.loc["mse", "status"] == "ok"


def test_quality_columns_keep_one_order_whichever_entry_failed(tmp_path, rel_suite):
    _ensure_nan_loss()
    columns = []
    for order in (("diverges:test_nan", "mse:mse"), ("mse:mse", "diverges:test_nan")):
        out = tmp_path / str(len(columns))
        suite = tmp_path / "s.toml"
        suite.write_text(rel_suite(2, *order))
        run = ["run", str(suite), "--out", str(out), "--no-progress", "--no-timing", "--seed", "0", "--no-store"]
        assert main(run) == 1
        (folder,) = (out / "rel").iterdir()
        columns.append(list(pd.read_csv(folder / "quality.csv").columns))
    assert columns[0] == columns[1]


def test_fail_fast_stops_at_first_failure(tmp_path, rel_suite):
    _ensure_nan_loss()
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(4, "diverges:test_nan", "mse:mse"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--fail-fast"]) == 1
    (folder,) = (tmp_path / "rel").iterdir()
    quality = pd.read_csv(folder / "quality.csv")
    assert list(quality.loc[quality["kind"] == "trained", "entry"]) == ["diverges"]


def test_skip_policy_counts_dropped_steps(tmp_path, rel_suite):
    _ensure_nan_loss()
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(4, "diverges:test_nan", on_nan="skip"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--seed", "0"]) == 0
    (folder,) = (tmp_path / "rel").iterdir()
    row = pd.read_csv(folder / "quality.csv").iloc[0]
    assert row["status"] == "ok" and row["skipped_steps"] == 4 and row["on_nan"] == "skip"


def _csv_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every CSV table of a run folder, wall-clock columns left out; columns in the order written."""
    return {path.stem: _without_wall_clock(pd.read_csv(path)) for path in sorted(folder.glob("*.csv"))}


def assert_same_tables(resumed: Path, uninterrupted: Path) -> None:
    """The same tables, the same columns in the same order, the same values to the last bit."""
    tables, expected = _csv_tables(resumed), _csv_tables(uninterrupted)
    assert sorted(tables) == sorted(expected)
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, expected[name], check_exact=True, obj=name)


def test_sigkill_then_resume_keeps_finished_entries_and_gives_the_same_tables(tmp_path, rel_suite):
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(40, "mse:mse", "l1:l1", "bce:bce"))
    base = [sys.executable, "-m", "bench", "run", str(suite), "--no-progress", "--no-timing"]

    full_run = [*base, "--out", str(tmp_path / "full"), "--no-store"]  # else the run cut below would reuse it
    assert subprocess.run(full_run, cwd=REPO, capture_output=True).returncode == 0
    (full,) = (tmp_path / "full" / "rel").iterdir()

    process = subprocess.Popen(
        [*base, "--out", str(tmp_path / "cut")], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    observed, deadline = 0, time.time() + 120
    try:
        while time.time() < deadline and process.poll() is None:
            for csv in (tmp_path / "cut").glob("rel/*/*.csv"):
                rows = pd.read_csv(csv)  # must always parse: writes are atomic
                assert not rows.empty
            quality = list((tmp_path / "cut").glob("rel/*/quality.csv"))
            if quality and len(pd.read_csv(quality[0])) >= 2:
                observed = len(pd.read_csv(quality[0]))
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (cut,) = (tmp_path / "cut" / "rel").iterdir()
    before = pd.read_csv(cut / "quality.csv")
    finished = before[before["kind"] == "trained"]
    assert 2 <= observed and 1 <= len(finished) < 6, (
        "the run finished (or never wrote) before it could be killed part-way"
    )

    resumed = subprocess.run([*base, "--resume", str(cut)], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"running {6 - len(finished)} of 6 trainings" in resumed.stdout
    # Kept, not retrained: a retrained entry would have taken another wall-clock time.
    after = pd.read_csv(cut / "quality.csv").set_index(["entry", "seed"])
    for _, row in finished.iterrows():
        assert after.loc[(row["entry"], row["seed"]), "train_seconds"] == row["train_seconds"]
    env = json.loads((cut / "environment.json").read_text())
    assert env["resumes"][-1]["kept"] == [f"{e} seed {s}" for e, s in zip(finished["entry"], finished["seed"])]
    assert_same_tables(cut, full)


def test_resume_refuses_a_changed_suite(tmp_path, capsys, rel_suite):
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "mse:mse"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--seed", "0"]) == 0
    (folder,) = (tmp_path / "rel").iterdir()
    assert (
        main(
            ["run", str(suite), "--resume", str(folder), "--steps", "3", "--no-progress", "--no-timing", "--seed", "0"]
        )
        == 2
    )
    assert "--force" in capsys.readouterr().err


def test_a_forced_resume_of_a_changed_suite_keeps_only_what_it_still_plans(tmp_path, rel_suite):
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "mse:mse", "l1:l1"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--seed", "0"]) == 0
    (folder,) = (tmp_path / "rel").iterdir()
    suite.write_text(rel_suite(2, "mse:mse", "huber:huber"))  # l1 renamed to huber
    assert main(["run", str(suite), "--resume", str(folder), "--force", "--no-progress", "--seed", "0"]) == 0
    trained = lambda table: (
        set(pd.read_csv(folder / f"{table}.csv")["entry"]) - {"baseline-mean-colour", "baseline-bicubic"}
    )
    assert trained("quality") == trained("summary") == {"mse", "huber"}
    assert set(pd.read_csv(folder / "speed.csv")["entry"]) == {"mse", "huber", "__model__"}
    assert json.loads((folder / "environment.json").read_text())["resumes"][-1]["kept"] == ["mse seed 0"]


def test_sigint_prints_how_to_resume(tmp_path, rel_suite):
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(100_000, "mse:mse", "l1:l1"))  # minutes: SIGINT lands mid-run
    # As from a terminal: a shell without job control starts background jobs with SIGINT ignored, and an
    # ignored signal stays ignored in the child, where Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300  # generous: on a 2-core machine under load, importing torch alone took a minute
    while time.time() < deadline and not list(tmp_path.glob("rel/*/environment.json")):
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130
    assert "Traceback" not in err
    (folder,) = (tmp_path / "rel").iterdir()
    # the command as it was run, overrides included (a resume must plan the same run), resuming that folder
    assert (
        f"resume with: python -m bench run {suite} --out {tmp_path} --no-progress --no-timing --resume {folder}\n"
        in err
    )


def test_unwritable_output_folder_is_input_error(tmp_path, capsys, rel_suite):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("a file where a folder should be")
        out = blocker
    else:
        out = tmp_path / "ro"
        out.mkdir(mode=0o500)
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(1, "mse:mse"))
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing"]) == 2
    assert "--out" in capsys.readouterr().err


# --- property-based: garbled suites never raise anything but BenchInputError --------------------------------

KEYS = [
    "name",
    "seeds",
    "task",
    "device",
    "data",
    "train",
    "timing",
    "model",
    "metrics",
    "entry",
    "profile",
    "resolution",
    "steps",
    "loss",
    "terms",
    "weight",
    "lr",
    "source",
    "path",
    "images",
    "eval_images",
]
scalars = st.one_of(
    st.integers(-3, 600),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.sampled_from(["mse", "ssim", "folder", "bundled", "cpu", "cuda", "autoencode"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_random_suite_structures_are_valid_or_one_input_error(tmp_path, raw):
    from bench.config.suite import parse_suite

    try:
        parse_suite(raw, path=tmp_path / "fuzz.toml")
    except BenchInputError as error:
        assert "fuzz.toml" in str(error)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,#\n abcdemnopstlrwy0123456789_-")), max_size=120))
def test_garbled_toml_text_is_valid_or_exit_2(tmp_path, text):
    path = tmp_path / "garbled.toml"
    path.write_text("[[entry]]\nname = 'a'\nloss = 'mse'\n" + text)
    try:
        load_suite(path)
    except BenchInputError as error:
        assert str(path) in str(error)


def test_disk_full_during_a_write_is_one_clear_error_and_leaves_no_partial_file(
    tmp_path, monkeypatch, capsys, rel_suite
):
    import errno

    import bench.results

    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "mse:mse"))
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_then_disk_full(fd):
        calls["n"] += 1
        if calls["n"] > 3:  # the first files fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(bench.results.os, "fsync", fsync_then_disk_full)
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert not list((tmp_path / "out").rglob(".*.*"))  # no temp file left behind
    for csv in (tmp_path / "out").rglob("*.csv"):
        pd.read_csv(csv)  # anything that exists is whole


def test_checkpoint_lets_resume_continue_mid_entry(tmp_path, rel_suite):
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(400, "mse:mse", seeds=[0], eval_every=100, checkpoint_every=20))
    base = [sys.executable, "-m", "bench", "run", str(suite), "--no-progress", "--no-timing"]
    full_run = [*base, "--out", str(tmp_path / "full"), "--no-store"]  # else the run cut below would reuse it
    assert subprocess.run(full_run, cwd=REPO, capture_output=True).returncode == 0
    (full,) = (tmp_path / "full" / "rel").iterdir()
    assert not list(full.glob("checkpoints/*.pt"))  # removed once the entry finished

    process = subprocess.Popen(
        [*base, "--out", str(tmp_path / "cut")], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline and process.poll() is None:
            if list((tmp_path / "cut").glob("rel/*/checkpoints/mse__seed0.pt")):
                break
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (cut,) = (tmp_path / "cut" / "rel").iterdir()
    checkpoint_file = cut / "checkpoints" / "mse__seed0.pt"
    assert checkpoint_file.is_file() and not (cut / "quality.csv").exists(), (
        "the entry finished before it could be killed mid-way"
    )
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    assert 0 < checkpoint["step"] < 400

    resumed = subprocess.run([*base, "--resume", str(cut)], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    env = json.loads((cut / "environment.json").read_text())
    assert env["resumes"][-1]["continued"] == {"mse seed 0": checkpoint["step"]}
    assert f"continued from its checkpoint at step {checkpoint['step']}" in resumed.stdout
    # The history up to the checkpoint is the killed run's, wall-clock seconds included: not trained again.
    history = pd.read_csv(cut / "history.csv")
    before = history[history["step"] <= checkpoint["step"]]
    assert before["seconds"].tolist() == pytest.approx([row["seconds"] for row in checkpoint["history"]], rel=1e-12)
    assert_same_tables(cut, full)


def test_a_checkpoint_restores_the_weight_average_and_a_loss_that_learns(tmp_path, monkeypatch):
    """In one process: training stopped right after its first checkpoint and resumed from it ends with the
    weights, weight average, learned loss parameters and history of a training never stopped."""
    from conftest import interrupted_and_resumed, tiny_training

    train = "steps = 12\nlog_every = 2\nema = 0.9\ncheckpoint_every = 4"
    training = tiny_training(tmp_path, "robust_adaptive", train)
    checkpoint = tmp_path / "adaptive.pt"
    whole, resumed = interrupted_and_resumed(monkeypatch, checkpoint, *training)
    assert resumed.resumed_from_step == 4 and not checkpoint.exists()
    for name, a, b in ((name, whole, resumed) for name in ("model", "loss")):
        for (key, x), (_, y) in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().items()):
            assert torch.equal(x, y), f"{name} {key}"
    drop_seconds = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert drop_seconds(resumed.history) == drop_seconds(whole.history)


# --- any exception from a loss or its factory fails only its entry; Ctrl-C and SystemExit stop the run ------


class _Raises(torch.nn.Module):
    def __init__(self, error: BaseException):
        super().__init__()
        self.error = error

    def forward(self, reconstruction, target):
        raise self.error


def _broken_factory(context):
    return {}["a key the user's factory forgot"]


RAISING_LOSSES = {
    "test_value_error": lambda context: _Raises(ValueError("bad value in user code")),
    "test_type_error": lambda context: _Raises(TypeError("bad type in user code")),
    "test_index_error": lambda context: _Raises(IndexError("index out of range in user code")),
    "test_assertion": lambda context: _Raises(AssertionError("user assertion")),
    "test_broken_factory": _broken_factory,
    "test_ctrl_c": lambda context: _Raises(KeyboardInterrupt()),
    "test_system_exit": lambda context: _Raises(SystemExit(3)),
}


def _ensure_raising_losses() -> None:
    for name, factory in RAISING_LOSSES.items():
        if name not in loss_names():
            register_loss(name, "test only: raises")(factory)


def test_any_exception_from_a_loss_or_its_factory_fails_only_that_entry(tmp_path, capsys, rel_suite):
    _ensure_raising_losses()
    failing = {
        "value": ("test_value_error", "ValueError: bad value in user code"),
        "type": ("test_type_error", "TypeError: bad type in user code"),
        "index": ("test_index_error", "IndexError: index out of range in user code"),
        "assert": ("test_assertion", "AssertionError: user assertion"),
        "factory/broken": ("test_broken_factory", 'KeyError: "a key the user\'s factory forgot"'),
    }
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "mse:mse", *(f"{n}:{loss}" for n, (loss, _) in failing.items()), "l1:l1", seeds=[0]))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 1
    (folder,) = (tmp_path / "rel").iterdir()
    quality = pd.read_csv(folder / "quality.csv", keep_default_na=False).set_index("entry")
    assert (quality.loc[["mse", "l1"], "status"] == "ok").all()
    from bench.config.names import entry_file

    for name, (loss, message) in failing.items():
        assert quality.loc[name, "status"] == "failed" and quality.loc[name, "error"] == message
        traceback_text = (folder / "errors" / entry_file(name, 0, ".txt")).read_text()
        assert traceback_text.startswith("Traceback") and message in traceback_text
    assert "_broken_factory" in (folder / "errors" / entry_file("factory/broken", 0, ".txt")).read_text()
    assert "traceback in errors/" in capsys.readouterr().out


def test_a_factory_error_has_the_same_traceback_for_every_seed(tmp_path, rel_suite):
    """The factory runs once per run; each seed's entry reports that one error, without the frames of earlier
    seeds' reports piled onto it."""
    _ensure_raising_losses()
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "broken:test_broken_factory"))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 1
    (folder,) = (tmp_path / "rel").iterdir()
    first, second = ((folder / "errors" / f"broken__seed{seed}.txt").read_text() for seed in (0, 1))
    assert first == second and "_broken_factory" in first


@pytest.mark.parametrize("loss, code", [("test_ctrl_c", 130), ("test_system_exit", 3)])
def test_ctrl_c_and_system_exit_in_a_loss_still_stop_the_run(tmp_path, loss, code, rel_suite):
    _ensure_raising_losses()
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(2, "mse:mse", f"stops:{loss}", "l1:l1", seeds=[0]))
    try:
        # One process: packed, a loss's own KeyboardInterrupt would end only its worker (a real Ctrl-C reaches
        # the driver, which ends the workers); a run that packs measures each loss's step before training.
        returned = main(
            ["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing", "--concurrent", "1"]
        )
    except SystemExit as exit:
        returned = exit.code
    assert returned == code
    (folder,) = (tmp_path / "rel").iterdir()
    quality = pd.read_csv(folder / "quality.csv")
    assert list(quality.loc[quality["kind"] == "trained", "entry"]) == ["mse"]  # l1 never ran
    assert not (folder / "errors").exists()


# --- a full disk or a read-only folder mid-run: the tables written before stay whole, the run resumes --------


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_a_write_failing_mid_run_keeps_every_table_whole_and_the_run_resumes(
    tmp_path, monkeypatch, capsys, code, rel_suite
):
    import errno

    import bench.train.jobs
    import bench.results

    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(3, "mse:mse", "l1:l1", "bce:bce", seeds=[0]))
    run = ["run", str(suite), "--no-progress", "--no-timing", "--no-store"]  # the resumed run trains bce again
    assert main([*run, "--out", str(tmp_path / "full")]) == 0
    (full,) = (tmp_path / "full" / "rel").iterdir()
    capsys.readouterr()

    real_replace, quality_writes = os.replace, []

    def third_quality_table_fails(src, dst):
        if Path(dst).name == "quality.csv":
            quality_writes.append(dst)
            if len(quality_writes) == 3:  # the third entry's
                raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        real_replace(src, dst)

    monkeypatch.setattr(bench.results.os, "replace", third_quality_table_fails)
    assert main([*run, "--out", str(tmp_path / "cut")]) == 2
    monkeypatch.setattr(bench.results.os, "replace", real_replace)
    (cut,) = (tmp_path / "cut" / "rel").iterdir()
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and os.strerror(getattr(errno, code)) in err and "Traceback" not in err
    assert f"--resume {cut}" in err
    assert not list(cut.rglob(".*"))  # no temp file left behind
    quality = pd.read_csv(cut / "quality.csv")
    assert list(quality.loc[quality["kind"] == "trained", "entry"]) == ["mse", "l1"]
    for csv in cut.glob("*.csv"):
        pd.read_csv(csv)  # whole

    trained, real_train = [], bench.train.jobs.train
    monkeypatch.setattr(
        bench.train.jobs, "train", lambda spec, *a, **k: (trained.append(spec.entry.name), real_train(spec, *a, **k))[1]
    )
    assert main([*run, "--resume", str(cut)]) == 0
    assert trained == ["bce"]
    for name in ("quality", "history", "per_image", "summary"):
        resumed, uninterrupted = (_without_wall_clock(pd.read_csv(folder / f"{name}.csv")) for folder in (cut, full))
        pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)


def _without_wall_clock(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame if c in TIMING_COLUMNS])


def _csv_text(folder: Path, name: str) -> str:
    """A table's text, wall-clock columns left out: every cell as written."""
    table = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
    return table.drop(columns=[c for c in table if c in TIMING_COLUMNS or "seconds" in c]).to_csv(index=False)


def test_a_truncated_checkpoint_on_resume_restarts_that_training(tmp_path, rel_suite, monkeypatch):
    """A checkpoint damaged on disk after a crash (truncated) is set aside with a one-line warning and its
    training starts again from step 0: the tables are an uninterrupted run's."""
    import bench
    import bench.train.loop as loop
    from bench.train.runner import RunStopped

    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(40, "mse:mse", seeds=[0], checkpoint_every=10))
    options = dict(progress=False, timing=False, report=False, concurrent=1, store=False)
    full = bench.run(suite, out=tmp_path / "full", **options).folder

    save = loop.save_checkpoint

    def save_then_stop(path, state, **stateful):  # a crash right after the first checkpoint
        save(path, state, **stateful)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    with pytest.raises(RunStopped) as stopped:
        bench.run(suite, out=tmp_path / "cut", **options)
    monkeypatch.setattr(loop, "save_checkpoint", save)
    cut = stopped.value.folder
    checkpoint = cut / "checkpoints" / "mse__seed0.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])

    lines: list[str] = []
    with pytest.warns(UserWarning, match="cannot be read .*set aside as mse__seed0.pt.damaged, this training starts"):
        bench.run(suite, resume=cut, log=lines.append, **options)
    quality = pd.read_csv(cut / "quality.csv")
    assert (quality["status"] == "ok").all()
    assert (cut / "checkpoints" / "mse__seed0.pt.damaged").is_file()
    assert not any("continued from its checkpoint" in line for line in lines)
    for name in ("quality", "history", "per_image"):
        assert _csv_text(cut, name) == _csv_text(full, name), name


FAILS_ONCE = """
from pathlib import Path

from bench import register_loss

MARK = Path({mark!r})


@register_loss("fails_once", "mse, but it fails while a marker file exists (a worker killed for memory)")
def fails_once(context):
    def loss(reconstruction, target):
        if MARK.exists():
            raise MemoryError("killed")
        return ((reconstruction - target) ** 2).mean()

    return loss
"""


@pytest.mark.usefixtures("clean_plugins")
def test_a_resumed_run_with_a_failed_row_writes_the_text_of_an_uninterrupted_one(tmp_path, rel_suite):
    """A training that failed once (its worker killed) and trained on resume: every table, as text, is an
    uninterrupted run's, whole numbers written whole (ms_ssim_levels 2, not 2.0)."""
    import bench

    mark = tmp_path / "mark"
    plugin = tmp_path / "fails_once.py"
    plugin.write_text(FAILS_ONCE.format(mark=str(mark)))
    suite = tmp_path / "s.toml"
    suite.write_text(rel_suite(10, "mse:mse", "once:fails_once", seeds=[0]))
    options = dict(progress=False, timing=False, report=False, concurrent=1, store=False, plugins=[str(plugin)])
    full = bench.run(suite, out=tmp_path / "full", **options).folder
    mark.touch()
    cut = bench.run(suite, out=tmp_path / "cut", **options).folder
    assert bench.open_run(cut).failed == ["once"]
    mark.unlink()
    bench.run(suite, resume=cut, **options)
    assert "ms_ssim_levels" in pd.read_csv(full / "quality.csv")
    for name in ("quality", "history", "per_image", "metrics", "summary"):
        assert _csv_text(cut, name) == _csv_text(full, name), name


def test_tables_read_back_and_written_again_keep_their_text(tmp_path):
    """Whole numbers are written whole whichever rows lack them, and rows read back from a table's text (as a
    resumed run keeps them) are written again as the same text, even where some of them lack a whole number."""
    from bench import results

    rows = [
        {"entry": "1", "seed": 0, "levels": 2, "x": 1.5, "failed_step": None},
        {"entry": "b", "seed": 0, "levels": 3, "failed_step": 7},
        {"entry": "c", "seed": 1, "x": 2.0, "failed_step": None},
    ]
    results.write_table(tmp_path, "t", rows)
    written = (tmp_path / "t.csv").read_text()
    assert written.splitlines()[1:] == ["1,0,2,1.5,", "b,0,3,,7", "c,1,,2.0,"]
    kept = results.records_from_text(results.read_table(tmp_path, "t", text=True).iloc[[0, 2]])
    assert kept[0]["entry"] == "1" and kept[0]["levels"] == 2 and isinstance(kept[0]["levels"], int)
    results.write_table(tmp_path, "again", kept + [rows[1]])
    assert (tmp_path / "again.csv").read_text().splitlines()[1:] == ["1,0,2,1.5,", "c,1,,2.0,", "b,0,3,,7"]
