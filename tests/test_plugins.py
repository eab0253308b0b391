"""Losses from plugins (an installed distribution's entry point, or -p / --plugin FILE) are first-class:
listed with their source, type-checked, trained, timed, reported, gated and run on Ray workers; a broken
plugin is one input error that names it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
# Each example plugin: (its folder, what `bench list` shows of it, its suite, the entries that suite trains)
EXAMPLES = {
    "loss": (
        REPO / "examples" / "lossbench-wavelet",
        "haar_l1",
        "[plugin wavelet (lossbench-wavelet 0.1.0)]",
        "wavelet.toml",
        {"haar_l1", "mse", "l1", "ssim"},
    ),
    "model": (
        REPO / "examples" / "lossbench-unet",
        "tiny_unet",
        "[plugin unet (lossbench-unet 0.1.0)]",
        "unet.toml",
        {"l1", "mse", "ssim"},
    ),
}
WALL_CLOCK = {"train_seconds", "seconds"}

PLUGIN = """
import torch
from bench import register_loss


@register_loss("cubic", "mean |x - y|^3", power=3.0)
def make_cubic(context, power):
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    return lambda x, y: (x - y).abs().pow(power).mean()  # a plain function is a loss too


@register_loss("flaky", "mse that raises from its third call on", fail_at=3)
def make_flaky(context, fail_at):
    calls = []

    def loss(x, y):
        calls.append(1)
        if len(calls) >= fail_at:
            raise ArithmeticError("flaky gave up")
        return torch.nn.functional.mse_loss(x, y)

    return loss
"""


def entry(loss: str, **params) -> dict:
    """An entry named after its loss, with parameters."""
    return {"name": loss, "loss": loss, **params}


MIX = {"name": "mix", "terms": [{"loss": "cubic", "weight": 0.5}, {"loss": "mse", "weight": 0.5}]}


pytestmark = pytest.mark.usefixtures("clean_plugins")


@pytest.fixture(params=["entry_point", "file"])
def plugin(request, tmp_path, installed_distribution):
    """(command-line flags that load it, its name for `requires`, how `bench list` names its source)."""
    if request.param == "entry_point":
        installed_distribution(tmp_path / "site", PLUGIN)
        return [], "lbtest-losses", "plugin mine (lbtest-losses 1.0)"
    path = tmp_path / "my_losses.py"
    path.write_text(PLUGIN)
    return ["--plugin", str(path)], "my_losses", f"plugin my_losses ({path})"


@pytest.fixture(scope="session")
def write_suite(tiny_suite):
    """``write_suite(folder, *entries, requires="") -> Path``: folder/suite.toml, the tiny suite with 32 px wide
    models, ten photographs (two held out), no evaluation during training and timing at 32 px."""

    def write(folder: Path, *entries: dict, requires: str = "") -> Path:
        path = folder / "suite.toml"
        path.write_text(
            tiny_suite(
                entries,
                requires=[requires] if requires else None,
                data={"images": None, "eval_images": 2},
                model={"width": 32},
                train={"eval_every": 0},
                timing={"resolution": 32},
            )
        )
        return path

    return write


def run_folder(out: Path) -> Path:
    (folder,) = (out / "tiny").iterdir()
    return folder


def test_a_plugin_loss_is_listed_validated_trained_timed_and_reported(plugin, tmp_path, capsys, write_suite):
    flags, requires, source = plugin
    assert main(["list", *flags]) == 0
    listing = capsys.readouterr().out
    assert f"cubic            mean |x - y|^3\n                 power=3.0\n                 [{source}]" in listing
    assert "[built-in]" in listing

    bad = write_suite(tmp_path, entry("cubic", power="three"))
    assert main(["validate", str(bad), *flags]) == 2
    assert "parameter 'power' of loss 'cubic' must be float" in capsys.readouterr().err

    suite = write_suite(tmp_path, entry("cubic"), MIX, entry("l1"), requires=requires)
    assert main(["validate", str(suite), *flags]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", *flags]) == 0
    folder = run_folder(tmp_path / "out")
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert quality.loc[["cubic", "mix", "l1"], "status"].eq("ok").all()
    history = pd.read_csv(folder / "history.csv")
    mix = history[history["entry"] == "mix"]
    assert mix["term_cubic"].notna().all() and mix["term_mse"].notna().all()  # per-term logging
    assert (mix["loss"] - 0.5 * mix["term_cubic"] - 0.5 * mix["term_mse"]).abs().max() < 1e-6
    speed = pd.read_csv(folder / "speed.csv")
    assert {"cubic", "mix", "l1"} <= set(speed["entry"])
    summary = pd.read_csv(folder / "summary.csv").set_index("entry")
    assert summary.loc["cubic", "loss_fwd_bwd_ms"] > 0
    report = (folder / "report.html").read_text()
    assert "cubic" in report and "0.5*cubic + 0.5*mse" in report


def test_a_suite_names_the_plugins_it_needs_and_a_missing_one_says_how_to_get_it(tmp_path, capsys, write_suite):
    suite = write_suite(tmp_path, entry("cubic"), requires="lossbench-nothing")
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "requires the plugin 'lossbench-nothing'" in err and "pip install lossbench-nothing" in err
    assert "--plugin" in err and "Traceback" not in err


def test_a_suite_never_imports_code(tmp_path, capsys, write_suite):
    """Without the plugin named on the command line, a plugin loss is an unknown loss: nothing is imported."""
    (tmp_path / "cubic.py").write_text("raise SystemExit('imported!')")
    suite = write_suite(tmp_path, entry("cubic"))
    assert main(["validate", str(suite)]) == 2
    assert "unknown loss 'cubic'" in capsys.readouterr().err


BROKEN = {
    "import_error": ("import lbtest_no_such_module\n", "failed to load: ModuleNotFoundError"),
    "duplicate": (
        'from bench import register_loss\n\n@register_loss("mse", "mine")\n'
        "def make(context):\n    return lambda x, y: (x - y).pow(2).mean()\n",
        "registers the loss 'mse', which built-in already registers",
    ),
    "bad_return": (
        'from bench import register_loss\n\n@register_loss("answer", "not a loss")\n'
        "def make(context):\n    return 42\n",
        "the factory of loss 'answer' returned int, not a loss",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize("how", ["entry_point", "file"])
def test_a_broken_plugin_is_one_input_error_naming_it(kind, how, tmp_path, installed_distribution, capsys, write_suite):
    source, message = BROKEN[kind]
    if how == "file":
        (tmp_path / "broken.py").write_text(source)
        flags, name = ["--plugin", str(tmp_path / "broken.py")], "broken"
    else:
        installed_distribution(tmp_path / "site", source)
        flags, name = [], "mine"
    suite = write_suite(tmp_path, entry("answer") if kind == "bad_return" else entry("mse"))
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and f"plugin {name}" in err and "Traceback" not in err, err
    assert not out.exists()  # nothing written


def test_a_plugin_loss_that_raises_mid_training_fails_only_its_entry(tmp_path, capsys, write_suite):
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    suite = write_suite(tmp_path, entry("flaky"), entry("mse"))
    assert (
        main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "-p", str(tmp_path / "my_losses.py")])
        == 1
    )
    folder = run_folder(tmp_path / "out")
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert (
        quality.loc["flaky", "status"] == "failed" and "ArithmeticError: flaky gave up" in quality.loc["flaky", "error"]
    )
    assert quality.loc["mse", "status"] == "ok"
    assert "flaky" not in set(pd.read_csv(folder / "speed.csv")["entry"])  # a failed entry is not timed
    assert (folder / "report.html").is_file()
    assert "flaky seed 0: FAILED (ArithmeticError: flaky gave up)" in capsys.readouterr().out


def test_module_plugins_load_by_name_and_autoload_can_be_turned_off(
    tmp_path, monkeypatch, installed_distribution, capsys
):
    installed_distribution(tmp_path / "site", PLUGIN, module="lbtest_by_name")
    monkeypatch.setenv("LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["list"]) == 0
    assert "cubic" not in capsys.readouterr().out
    assert main(["list", "-p", "lbtest_by_name"]) == 0
    assert "[plugin lbtest_by_name]" in capsys.readouterr().out


def test_input_range_and_pretrained_metadata_act_on_the_built_loss():
    import torch

    import bench
    from bench.losses import build_entry_loss
    from bench.config.suite import Entry, Term

    seen = []

    class Probe(torch.nn.Module):
        weights_used = "random"

        def forward(self, x, y):
            seen.append((x.min().item(), x.max().item()))
            return (x - y).abs().mean()

    bench.register_loss("probe", "records its inputs", input_range=(-1.0, 1.0), pretrained=True)(
        lambda context: Probe()
    )
    bench.register_loss("unsaid", "pretrained, but says nothing", pretrained=True)(lambda context: lambda x, y: x.sum())
    loss = build_entry_loss(Entry("p", (Term("probe", 1.0, {}, "probe"),)), bench.LossContext(image_size=8))
    loss(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    assert seen == [(-1.0, 1.0)] and loss.weights_used == "probe=random"
    with pytest.raises(bench.BenchInputError, match="pretrained=True but its module does not say"):
        build_entry_loss(Entry("u", (Term("unsaid", 1.0, {}, "unsaid"),)), bench.LossContext(image_size=8))


TRAINABLE_NETWORK = '''
import torch
from bench import register_loss


class Colours(torch.nn.Module):
    """mse after a 1x1 convolution left trainable, as a plugin author might write a feature loss."""

    def __init__(self, learns):
        super().__init__()
        self.mix = torch.nn.Conv2d(3, 3, 1)
        self.learns_with_model = learns

    def forward(self, reconstruction, target):
        return torch.nn.functional.mse_loss(self.mix(reconstruction), self.mix(target))


@register_loss("colours", "mse of 1x1-convolved colours", learns=False)
def make_colours(context, learns):
    return Colours(learns)
'''


def test_a_plugin_loss_network_is_frozen_unless_it_learns_with_the_model(tmp_path, write_suite):
    (tmp_path / "net_losses.py").write_text(TRAINABLE_NETWORK)
    suite = write_suite(
        tmp_path, {"name": "frozen", "loss": "colours"}, {"name": "learning", "loss": "colours", "learns": True}
    )
    assert (
        main(
            [
                "run",
                str(suite),
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
                "--no-timing",
                "-p",
                str(tmp_path / "net_losses.py"),
            ]
        )
        == 0
    )
    learned = pd.read_csv(run_folder(tmp_path / "out") / "quality.csv", keep_default_na=False).set_index("entry")
    assert learned.loc["frozen", "loss_learned"] == ""  # nothing of the loss was optimised
    assert learned.loc["learning", "loss_learned"].startswith("colours: ")  # its parameters were


def test_ray_workers_load_the_plugins_and_match_one_process(tmp_path, write_suite):
    pytest.importorskip("ray", reason="Ray is the optional extra: pip install -e '.[distributed]'")
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    suite = write_suite(tmp_path, entry("cubic"), MIX)
    flags = ["--no-progress", "--no-timing", "--plugin", str(tmp_path / "my_losses.py")]
    assert main(["run", str(suite), "--out", str(tmp_path / "single"), "--no-store", *flags]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "ray"), "--workers", "2", "--no-store", *flags]) == 0
    single, parallel = run_folder(tmp_path / "single"), run_folder(tmp_path / "ray")
    for table in ("quality", "history"):
        a, b = (pd.read_csv(folder / f"{table}.csv") for folder in (single, parallel))
        a, b = (frame.drop(columns=[c for c in frame if c in WALL_CLOCK]) for frame in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (pd.read_csv(parallel / "quality.csv")["status"] == "ok").all()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.mark.parametrize("baseline_has_plugins", [True, False])
def test_the_speed_gate_loads_plugins_on_both_sides_or_says_why_not(
    baseline_has_plugins, tmp_path, monkeypatch, capsys, write_suite
):
    """The baseline is this bench package committed to a scratch repository, with or without bench.config.plugins."""
    import bench

    repo = tmp_path / "repo"
    shutil.copytree(Path(bench.__file__).parent, repo / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    if not baseline_has_plugins:
        (repo / "bench" / "config" / "plugins.py").unlink()
    git(repo, "init", "-q")
    git(repo, "add", "bench")
    git(repo, "commit", "-q", "-m", "baseline")
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    suite = write_suite(tmp_path, entry("cubic"), entry("mse"))
    monkeypatch.chdir(repo)
    assert (
        main(
            [
                "check",
                str(suite),
                "--against",
                "HEAD",
                "--rounds",
                "2",
                "--block-ms",
                "1",
                "--processes",
                "1",
                "--out",
                str(tmp_path / "out"),
                "-p",
                str(tmp_path / "my_losses.py"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    verdicts = pd.read_csv(next((tmp_path / "out" / "tiny").iterdir()) / "speed_gate.csv").set_index("entry")
    assert verdicts.loc["mse", "verdict"] == "ok"
    if baseline_has_plugins:
        assert verdicts.loc["cubic", "verdict"] == "ok"
    else:
        assert verdicts.loc["cubic", "verdict"] == "new"
        assert "this revision of bench cannot load loss plugins" in out


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_example_plugin_installs_with_pip_and_runs(kind, tmp_path):
    """An example plugin (examples/lossbench-wavelet, examples/lossbench-unet) installed by pip into a folder of
    its own (never the shared site-packages), then found by its entry point in a fresh process: listed, its own
    tests pass, its suite runs."""
    example, name, source, suite, entries = EXAMPLES[kind]
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(example),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(target)])}
    bench = lambda *args: subprocess.run(
        [sys.executable, "-m", "bench", *args],
        env=env,
        cwd=tmp_path,  # noqa: E731
        capture_output=True,
        text=True,
    )
    listing = bench("list")
    assert name in listing.stdout and source in listing.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example / "tests")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    done = bench(
        "run",
        str(example / suite),
        "--steps",
        "3",
        "--seed",
        "0",
        "--no-timing",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "out" / Path(suite).stem).iterdir()
    quality = pd.read_csv(folder / "quality.csv")
    assert set(quality["entry"]) >= entries and (quality["status"] == "ok").all()
