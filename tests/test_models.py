"""Models from plugins (a --plugin file, an installed entry point, or a factory given to bench.run) train as the
built-in autoencoder does: from one initial state per seed, into the same tables; a model whose output cannot
be trained on is refused before training, and one that raises fails only its entries."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import pandas as pd
import pytest
import torch

import bench
from bench.cli import main

pytestmark = pytest.mark.usefixtures("clean_plugins")

MODELS = """
import torch
from torch import nn
from bench import register_model


class TwoConvs(nn.Module):
    def __init__(self, channels, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, images):
        return torch.sigmoid(self.body(images))


class Brighter(TwoConvs):
    def forward(self, images):
        return super().forward(images) + 1.0


class Exploding(TwoConvs):
    def forward(self, images):
        raise FloatingPointError("exploding model")


@register_model("two_convs", "two convolutions and a sigmoid", width=8)
def make_two_convs(context, width):
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return TwoConvs(context.channels, width)


@register_model("half_size", "returns images of half the side")
def make_half_size(context):
    return nn.Sequential(TwoConvs(context.channels, 4), nn.AvgPool2d(2))


@register_model("brighter", "a sigmoid plus one: values in (1, 2)")
def make_brighter(context):
    return Brighter(context.channels, 4)


@register_model("exploding", "raises in forward")
def make_exploding(context):
    return Exploding(context.channels, 4)


@register_model("unbuildable", "raises in its factory")
def make_unbuildable(context):
    raise MemoryError("no room for this model")
"""

BUILTIN_MODEL = "latent_dim = 64\nwidth = 16"
PLUGIN_MODEL = 'name = "two_convs"\nwidth = 4'


@pytest.fixture(scope="session")
def write_suite(tiny_suite):
    """``write_suite(folder, model, extra=()) -> Path``: folder/tiny.toml, the tiny suite with two seeds, the
    [model] table ``model`` and the entries mse, bce and then ``extra``."""

    def write(folder: Path, model: str, extra: Sequence[dict] = ()) -> Path:
        path = folder / "tiny.toml"
        path.write_text(tiny_suite(["mse", "bce", *extra], seeds=[0, 1], model=model))
        return path

    return write


def run(suite: Path, out: Path, *flags: str) -> int:
    return main(["run", str(suite), "--out", str(out), "--no-progress", *flags])


def run_folder(out: Path) -> Path:
    (folder,) = (out / "tiny").iterdir()
    return folder


@pytest.fixture
def plugin_flags(request, tmp_path, installed_distribution) -> list[str]:
    """The flags that load the MODELS plugin: none for an installed one, --plugin FILE for a file."""
    if request.param == "entry_point":
        installed_distribution(tmp_path / "site", MODELS, group="lossbench.models")
        return []
    (tmp_path / "my_models.py").write_text(MODELS)
    return ["--plugin", str(tmp_path / "my_models.py")]


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory, write_suite) -> Path:
    folder = tmp_path_factory.mktemp("builtin")
    assert run(write_suite(folder, BUILTIN_MODEL), folder / "out") == 0
    return run_folder(folder / "out")


def tables(folder: Path) -> dict[str, list[str]]:
    """Each CSV table of a run folder, by name, with its columns."""
    return {path.name: list(pd.read_csv(path).columns) for path in sorted(folder.glob("*.csv"))}


@pytest.fixture
def initial_states(monkeypatch) -> dict:
    """The state every training starts from, saved by (entry, seed) as it enters the training loop."""
    import bench.train.jobs as jobs

    saved, train = {}, jobs.train

    def saving_train(spec, initial_model, *args, **kwargs):
        saved[(spec.entry.name, spec.seed)] = copy.deepcopy(initial_model.state_dict())
        return train(spec, initial_model, *args, **kwargs)

    monkeypatch.setattr(jobs, "train", saving_train)
    return saved


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("plugin_flags", ["entry_point", "file"], indirect=True)
def test_a_plugin_model_trains_every_entry_from_one_initial_state_per_seed_into_the_usual_tables(
    plugin_flags, builtin_run, initial_states, tmp_path, capsys, write_suite
):
    assert main(["list", *plugin_flags]) == 0
    listing = capsys.readouterr().out
    shown = "two_convs        two convolutions and a sigmoid\n" + " " * 17 + "width=8\n" + " " * 17 + "[plugin "
    assert shown in listing
    assert run(write_suite(tmp_path, PLUGIN_MODEL), tmp_path / "out", *plugin_flags) == 0
    folder = run_folder(tmp_path / "out")

    for seed in (0, 1):
        assert same_state(initial_states[("mse", seed)], initial_states[("bce", seed)])
    assert not same_state(initial_states[("mse", 0)], initial_states[("mse", 1)])
    assert initial_states[("mse", 0)]["body.0.weight"].shape == (4, 3, 3, 3)  # the suite's width = 4

    assert tables(folder) == tables(builtin_run)
    quality = pd.read_csv(folder / "quality.csv")
    trained = quality[quality["kind"] == "trained"]
    assert (trained["status"] == "ok").all() and len(trained) == 4
    assert set(trained["model"]) == {"two_convs"} and set(trained["model_config"]) == {"two_convs(width=4)"}
    # A model without a latent_dim has no bicubic baseline of the same size; the trivial one stays.
    assert set(quality.loc[quality["kind"] == "baseline", "entry"]) == {"baseline-mean-colour"}
    assert "two_convs(width=4)" in (folder / "report.html").read_text()


@pytest.mark.parametrize(
    "model, messages",
    [
        (
            'name = "two_convs"\nwidth = 0',
            [
                "model (plugin my_models ({path})): model 'two_convs' could not be built: "
                "width must be >= 1, got 0\n  fix: change its parameters in [model]"
            ],
        ),
        (
            'name = "half_size"',
            [
                "model 'half_size' (plugin my_models ({path})): returns shape (2, 3, 8, 8) for inputs of "
                "shape (2, 3, 16, 16), whose targets have shape (2, 3, 16, 16)\n  fix: return one tensor shaped like "
                "the targets"
            ],
        ),
        (
            'name = "brighter"',
            [
                "model 'brighter' (plugin my_models ({path})): returns values in [1.",
                "outside [0, 1]",
                "fix: end the model with a sigmoid",
            ],
        ),
    ],
)
def test_a_model_that_cannot_be_built_or_trained_on_is_refused_before_training(
    model, messages, tmp_path, capsys, write_suite
):
    plugin = tmp_path / "my_models.py"
    plugin.write_text(MODELS)
    assert run(write_suite(tmp_path, model), tmp_path / "out", "--plugin", str(plugin)) == 2
    err = capsys.readouterr().err
    assert all(message.format(path=plugin) in err for message in messages) and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # refused before any run folder


def test_a_model_that_raises_fails_only_its_entries(tmp_path, capsys, write_suite):
    plugin = tmp_path / "my_models.py"
    plugin.write_text(MODELS)
    failing = [
        {"name": "boom", "loss": "mse", "model": {"name": "exploding"}},
        {"name": "unbuilt", "loss": "mse", "model": {"name": "unbuildable"}},
    ]
    assert run(write_suite(tmp_path, PLUGIN_MODEL, failing), tmp_path / "out", "--plugin", str(plugin)) == 1
    folder = run_folder(tmp_path / "out")
    quality = pd.read_csv(folder / "quality.csv").set_index(["entry", "seed"])
    assert (quality.loc[["boom", "unbuilt"], "status"] == "failed").all()
    assert (quality.loc["boom", "error"] == "FloatingPointError: exploding model").all()
    assert (quality.loc["unbuilt", "error"] == "MemoryError: no room for this model").all()
    assert (quality.loc[["mse", "bce"], "status"] == "ok").all()
    assert "exploding model" in (folder / "errors" / "boom__seed0.txt").read_text()


@pytest.mark.parametrize(
    "model, where, message",
    [
        ('name = "two_convs"\nwidht = 4', "model.widht", "did you mean 'width'?"),
        ('name = "two_conv"', "model", "unknown model 'two_conv'"),
        ('name = "two_convs"\nwidth = "wide"', "model.width", "parameter 'width' of model 'two_convs' must be int"),
        ("latent_dim = 64\nwidth = 4\ndepth = 2", "model.depth", "model 'autoencoder' has no parameter 'depth'"),
        ("name = 3", "model.name", "name must be a model name"),
    ],
)
def test_a_bad_model_table_is_one_input_error_naming_the_key(model, where, message, tmp_path, capsys, write_suite):
    plugin = tmp_path / "my_models.py"
    plugin.write_text(MODELS)
    suite = write_suite(tmp_path, model)
    assert main(["validate", str(suite), "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err
    assert f"{suite}: {where}" in err and message in err and "Traceback" not in err, err


def test_the_python_api_trains_a_model_factory(tmp_path, write_suite):
    from torch import nn

    def tiny_net(context, width=4):
        """a convolution and a sigmoid"""
        return nn.Sequential(
            nn.Conv2d(context.channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, context.channels, 3, padding=1),
            nn.Sigmoid(),
        )

    suite = bench.load_suite(write_suite(tmp_path, BUILTIN_MODEL))
    for _ in range(2):  # the factory is registered once, and found again
        result = bench.run(
            suite,
            model=tiny_net,
            out=tmp_path / "out",
            timing=False,
            progress=False,
            report=False,
            log=lambda line: None,
        )
        trained = result.quality[result.quality["kind"] == "trained"]
        assert (trained["status"] == "ok").all() and set(trained["model_config"]) == {"tiny_net(width=4)"}
    assert "tiny_net" in bench.model_names()
