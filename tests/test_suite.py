"""Suite parsing: valid suites become frozen dataclasses; every bad input is one clear error (exit 2)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import BenchInputError
from bench.config.suite import load_suite, suite_for_device

REPO = Path(__file__).resolve().parents[1]

VALID = """
name = "t"
seeds = [0, 1]
[data]
resolution = 64
images = 6
eval_images = 2
[train]
steps = 3
[profile.cpu]
data.resolution = 32
train.steps = 2
[[entry]]
name = "mse"
loss = "mse"
[[entry]]
name = "mix"
terms = [{ loss = "perceptual", weight = 0.8, net = "vgg16", layers = ["relu2_2"] }, { loss = "mse", weight = 0.2 }]
train = { lr = 1e-3 }
[[entry]]
name = "huber"
loss = "huber"
delta = 0.5
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_suite_parses_into_frozen_dataclasses(tmp_path):
    suite = load_suite(write(tmp_path, VALID))
    assert suite.name == "t" and suite.seeds == (0, 1)
    assert [e.name for e in suite.entries] == ["mse", "mix", "huber"]
    mix = suite.entries[1]
    assert [(t.loss, t.weight) for t in mix.terms] == [("perceptual", 0.8), ("mse", 0.2)]
    assert mix.terms[0].params["net"] == "vgg16" and mix.terms[0].params["distance"] in ("l1", "l2")
    assert mix.overrides == {"train": {"lr": 1e-3}}
    assert suite.entries[2].terms[0].params == {"delta": 0.5}
    assert mix.formula == "0.8*perceptual + 0.2*mse"
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.name = "other"


def test_cpu_profile_applies_only_on_cpu(tmp_path):
    suite = load_suite(write(tmp_path, VALID))
    assert suite_for_device(suite, "cpu").data.resolution == 32
    assert suite_for_device(suite, "cpu").train.steps == 2
    assert suite_for_device(suite, "cuda").data.resolution == 64


def test_profile_seeds_apply_on_their_device_and_the_command_line_wins(tmp_path):
    path = write(tmp_path, VALID.replace("[profile.cpu]\n", "[profile.cpu]\nseeds = [3, 4, 5]\n"))
    suite = load_suite(path)
    assert suite_for_device(suite, "cpu").seeds == (3, 4, 5) and suite_for_device(suite, "cuda").seeds == (0, 1)
    from bench.cli import build_parser, load_with_overrides

    args = build_parser().parse_args(["run", str(path), "--seeds", "1"])
    assert suite_for_device(load_with_overrides(args), "cpu").seeds == (0,)


def test_shipped_suites_are_valid():
    for path in sorted((REPO / "suites").glob("*.toml")):
        assert main(["validate", str(path)]) == 0, path


BAD_SUITES = {
    "unknown top-level key": ("name = 't'\nstepz = 3\n[[entry]]\nname='a'\nloss='mse'\n", "stepz", "unknown key"),
    "unknown section key": (
        "[train]\nstepz = 3\n[[entry]]\nname='a'\nloss='mse'\n",
        "train.stepz",
        "did you mean 'steps'",
    ),
    "unknown loss": ("[[entry]]\nname='a'\nloss='mse2'\n", "entry[0] (a)", "did you mean 'mse'"),
    "unknown loss parameter": ("[[entry]]\nname='a'\nloss='huber'\ndelt=1.0\n", "delt", "did you mean 'delta'"),
    "negative weight": ("[[entry]]\nname='a'\nterms=[{loss='mse', weight=-1}]\n", "terms[0].weight", "positive"),
    "non-numeric weight": (
        "[[entry]]\nname='a'\nterms=[{loss='mse', weight='heavy'}]\n",
        "terms[0].weight",
        "positive",
    ),
    "duplicate entry": (
        "[[entry]]\nname='a'\nloss='mse'\n[[entry]]\nname='a'\nloss='l1'\n",
        "entry[1] (a).name",
        "duplicate",
    ),
    "unreachable resolution": (
        "[data]\nresolution = 500\n[[entry]]\nname='a'\nloss='mse'\n",
        "data.resolution",
        "nearest: 512",
    ),
    "unreachable timing resolution": (
        "[timing]\nresolution = 100\n[[entry]]\nname='a'\nloss='mse'\n",
        "timing.resolution",
        "128",
    ),
    "missing image folder": (
        "[data]\nsource='folder'\npath='nope/'\n[[entry]]\nname='a'\nloss='mse'\n",
        "data.path",
        "does not exist",
    ),
    "malformed toml": ("[data\nresolution = 64\n", "suite.toml", "not valid TOML"),
    "wrong value type": (
        "[train]\nsteps = 'many'\n[[entry]]\nname='a'\nloss='mse'\n",
        "train.steps",
        "expected a value like 300",
    ),
    "no entries": ("name = 't'\n", "entry", "at least one"),
    "loss and terms": ("[[entry]]\nname='a'\nloss='mse'\nterms=[{loss='l1'}]\n", "terms", "either loss or terms"),
    "bad profile": ("[profile.tpu]\ntrain.steps=1\n[[entry]]\nname='a'\nloss='mse'\n", "profile.tpu", "profile.cpu"),
    "profile makes it invalid": (
        "[profile.cpu]\ndata.resolution=48\n[[entry]]\nname='a'\nloss='mse'\n",
        "profile.cpu",
        "cannot be reached",
    ),
    "bad loss parameter type": ("[[entry]]\nname='a'\nloss='huber'\ndelta='big'\n", "delta", "must be float"),
    "bad seeds": ("seeds = [0, -1]\n[[entry]]\nname='a'\nloss='mse'\n", "seeds", "non-negative"),
    "entry name read as NaN": ("[[entry]]\nname='NaN'\nloss='mse'\n", "entry[0] (NaN).name", "missing value"),
    "bad timing variant": ("[timing]\nvariants=['fp64']\n[[entry]]\nname='a'\nloss='mse'\n", "timing.variants", "bf16"),
    "unknown bottleneck": (
        "[model]\nbottleneck='mlp'\n[[entry]]\nname='a'\nloss='mse'\n",
        "model.bottleneck",
        "conv, linear",
    ),
    "conv latent not a map": (
        "[model]\nlatent_dim=100\n[[entry]]\nname='a'\nloss='mse'\n",
        "model.latent_dim",
        "multiple of 64",
    ),
    "zero scale": ("[data]\nscale=0\n[[entry]]\nname='a'\nloss='mse'\n", "data.scale", "positive"),
    "ema of one": ("[train]\nema=1.0\n[[entry]]\nname='a'\nloss='mse'\n", "train.ema", "[0, 1)"),
    "no eval crops": ("[data]\neval_crops=0\n[[entry]]\nname='a'\nloss='mse'\n", "data.eval_crops", "at least 1"),
    "baseline name": ("[[entry]]\nname='baseline-mine'\nloss='mse'\n", "entry[0] (baseline-mine).name", "reserved"),
    "bad profile seeds": (
        "[profile.cpu]\nseeds=[1, 1]\n[[entry]]\nname='a'\nloss='mse'\n",
        "profile.cpu.seeds",
        "repeat",
    ),
}


@pytest.mark.parametrize("name", ["NaN", "null", "#N/A N/A", "1.#IND", "-1.#QNAN", "N/A", "nan-loss", "None-ish"])
def test_an_entry_name_is_refused_exactly_when_a_csv_would_read_it_back_as_missing(tmp_path, name):
    import io

    import pandas as pd

    read_back = pd.read_csv(io.StringIO(f"entry\n{name}\n"), dtype={"entry": str})["entry"][0]
    path = write(tmp_path, f"[[entry]]\nname = {name!r}\nloss = 'mse'\n")
    if pd.isna(read_back):
        with pytest.raises(BenchInputError, match="missing value"):
            load_suite(path)
    else:
        assert load_suite(path).entries[0].name == name


@pytest.mark.parametrize("case", list(BAD_SUITES), ids=list(BAD_SUITES))
def test_bad_suite_is_one_clear_error(tmp_path, capsys, case):
    text, key, message = BAD_SUITES[case]
    path = write(tmp_path, text)
    with pytest.raises(BenchInputError) as caught:
        load_suite(path)
    assert str(path) in str(caught.value)
    assert key in str(caught.value) and message in str(caught.value)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and key in err and "Traceback" not in err


def test_missing_suite_file_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "absent.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_input_through_python_m_has_no_traceback(tmp_path):
    path = write(tmp_path, "[[entry]]\nname='a'\nloss='perceptuall'\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "did you mean 'perceptual'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()  # nothing is created for a suite that cannot run


@pytest.mark.parametrize(
    "flags, key",
    [
        (["--only", "nope"], "unknown entries"),
        (["--steps", "0"], "--steps"),
        (["--seed", "1", "--seeds", "2"], "not both"),
        (["--device", "cuda:0"], "no CUDA GPU"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_command_line_overrides_exit_2(tmp_path, capsys, flags, key):
    path = write(tmp_path, "[[entry]]\nname='a'\nloss='mse'\n")
    if "--device" in flags:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        assert main(["run", str(path), "--out", str(tmp_path / "r"), *flags]) == 2
    else:
        assert main(["validate", str(path), *flags]) == 2
    assert key in capsys.readouterr().err


def test_readme_suite_example_is_valid(tmp_path):
    readme = (REPO / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    suite = load_suite(write(tmp_path, example))
    assert [e.name for e in suite.entries] == ["ssim", "perceptual+mse", "l1-fast"]
