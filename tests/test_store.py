"""The store of finished trainings (bench.results.store) and its keys (bench.results.keys): what changes a key,
reuse giving a fresh run's tables, an edited plugin, a corrupt folder, two runs at once, --fresh, bench store."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import bench
from bench.cli import main
from bench.config.plan import make_plan
from bench.config.suite import DataConfig, TrainConfig, parse_suite
from bench.results import keys
from bench.results.keys import training_key
from bench.results.store import Store

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = {"quality": ["train_seconds"], "history": ["seconds"], "per_image": []}


# --- the key --------------------------------------------------------------------------------------------------


@pytest.fixture
def key_parts(tiny_suite, tmp_path):
    """Everything ``training_key`` takes, for the first training of a two-term tiny suite."""
    text = tiny_suite([{"name": "mix", "terms": [{"loss": "mse", "weight": 0.5}, {"loss": "l1", "weight": 0.5}]}])
    suite = parse_suite(tomllib.loads(text), path=tmp_path / "tiny.toml", text=text)
    spec = make_plan(suite, "none")[0]
    return {
        "spec": spec,
        "images": SimpleNamespace(images_sha256="a" * 64, eval=torch.zeros(2, 3, 4, 4), eval_names=("p@0,0", "p@0,4")),
        "loss": SimpleNamespace(weights_used="none", loss_config=""),
        "metrics": SimpleNamespace(compute=("psnr", "ssim"), provenance={"lpips_weights": "random"}),
        "device": torch.device("cpu"),
        "threads": 1,
        "deterministic": False,
        "loss_networks": "fp32",
    }


def _changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, tuple):
        return (*value, 0.1)
    return f"{value}x" if value is not None else "other"


def _spec_change(section: str, name: str):
    def change(parts):
        spec = parts["spec"]
        config = getattr(spec, section)
        parts["spec"] = dataclasses.replace(
            spec, **{section: dataclasses.replace(config, **{name: _changed(getattr(config, name))})}
        )

    return change


def _entry_change(how):
    def change(parts):
        spec = parts["spec"]
        parts["spec"] = dataclasses.replace(spec, entry=how(spec.entry))

    return change


def _term(entry, **changes):
    return dataclasses.replace(entry, terms=(dataclasses.replace(entry.terms[0], **changes), *entry.terms[1:]))


def _set(part, value):
    def change(parts):
        parts[part] = value

    return change


def _attribute(part, name, value):
    def change(parts):
        parts[part] = SimpleNamespace(**{**vars(parts[part]), name: value})

    return change


CHANGES = {
    **{
        f"data.{field.name}": _spec_change("data", field.name)
        for field in dataclasses.fields(DataConfig)
        if field.name not in keys.DATA_PATHS
    },
    **{f"train.{field.name}": _spec_change("train", field.name) for field in dataclasses.fields(TrainConfig)},
    "entry: a term's weight": _entry_change(lambda entry: _term(entry, weight=0.25)),
    "entry: a term's loss": _entry_change(lambda entry: _term(entry, loss="charbonnier", label="charbonnier")),
    "entry: a term's parameters": _entry_change(lambda entry: _term(entry, params={"reduction": "sum"})),
    "entry: a term's label": _entry_change(lambda entry: _term(entry, label="other")),
    "entry: its overrides": _entry_change(lambda entry: dataclasses.replace(entry, overrides={"train": {"steps": 3}})),
    "seed": lambda parts: parts.update(spec=dataclasses.replace(parts["spec"], seed=1)),
    "task": lambda parts: parts.update(spec=dataclasses.replace(parts["spec"], task="denoise")),
    "profile": lambda parts: parts.update(spec=dataclasses.replace(parts["spec"], profile="cpu")),
    "model name": lambda parts: parts.update(
        spec=dataclasses.replace(parts["spec"], model=dataclasses.replace(parts["spec"].model, name="denoiser"))
    ),
    "model parameters": lambda parts: parts.update(
        spec=dataclasses.replace(
            parts["spec"],
            model=dataclasses.replace(parts["spec"].model, params=(*parts["spec"].model.params, ("extra", 1))),
        )
    ),
    "images_sha256": _attribute("images", "images_sha256", "b" * 64),
    "evaluation crops' pixels": _attribute("images", "eval", torch.ones(2, 3, 4, 4)),
    "evaluation crops' names": _attribute("images", "eval_names", ("p@0,0", "q@0,4")),
    "loss weights found": _attribute("loss", "weights_used", "mse=imagenet"),
    "loss config chosen": _attribute("loss", "loss_config", "ms_ssim: levels=3 at 64px"),
    "metrics computed": _attribute("metrics", "compute", ("psnr",)),
    "metric networks' weights": _attribute("metrics", "provenance", {"lpips_weights": "imagenet"}),
    "threads per training": _set("threads", 2),
    "deterministic": _set("deterministic", True),
    "loss networks' precision as resolved": _set("loss_networks", "bf16"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_each_setting_changes_the_key(key_parts, change):
    before = training_key(**key_parts)
    change(key_parts)
    assert training_key(**key_parts).sha256 != before.sha256


@pytest.mark.parametrize(
    "change",
    [
        lambda mp: mp.setattr(torch, "__version__", "9.9.9"),
        lambda mp: mp.setattr(keys, "code_fingerprint", lambda: "0" * 64),
        lambda mp: mp.setattr("bench.results.device_name", lambda device: "another CPU"),
        lambda mp: (
            mp.setattr("bench.results.device_name", lambda device: "NVIDIA H200")
            or mp.setattr(keys, "_device_type", lambda device: "cuda")
        ),
    ],
    ids=["torch version", "code fingerprint", "CPU model", "CUDA with the GPU's name"],
)
def test_the_machine_and_the_code_change_the_key(key_parts, monkeypatch, change):
    before = training_key(**key_parts)
    change(monkeypatch)
    assert training_key(**key_parts).sha256 != before.sha256


def test_names_and_folders_are_not_in_the_key(key_parts):
    """Content, not names: a renamed entry, or photographs read from another folder, keep their key."""
    before = training_key(**key_parts)
    spec = key_parts["spec"]
    key_parts["spec"] = dataclasses.replace(
        spec,
        entry=dataclasses.replace(spec.entry, name="renamed"),
        data=dataclasses.replace(spec.data, path="elsewhere/", cache="cache/"),
    )
    assert training_key(**key_parts).sha256 == before.sha256


def test_the_code_fingerprint_follows_every_source_file(tmp_path):
    package = tmp_path / "bench"
    shutil.copytree(REPO / "bench", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = keys._tree_sha256(package)
    assert before == keys.code_fingerprint()
    module = package / "evaluate" / "stats.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert keys._tree_sha256(package) != before


PLUGIN = """
from bench import register_loss

SCALE = {scale}


@register_loss("scaled_mse", "mse times a constant")
def scaled_mse(context):
    return lambda reconstruction, target: SCALE * ((reconstruction - target) ** 2).mean()
"""


@pytest.mark.usefixtures("clean_plugins")
def test_a_plugins_source_and_a_named_files_bytes_change_the_key(key_parts, tmp_path):
    from bench.config.plugins import load_plugins

    plugin = tmp_path / "scaled.py"
    plugin.write_text(PLUGIN.format(scale=2.0))
    load_plugins([str(plugin)])
    spec = key_parts["spec"]
    key_parts["spec"] = dataclasses.replace(spec, entry=_term(spec.entry, loss="scaled_mse", label="scaled_mse"))
    before = training_key(**key_parts)
    assert list(before.contents["plugins"]) == ["loss scaled_mse"]
    plugin.write_text(PLUGIN.format(scale=3.0))
    edited = training_key(**key_parts)
    assert edited.sha256 != before.sha256

    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"one")
    key_parts["metrics"] = SimpleNamespace(compute=("psnr",), provenance={"lpips_weights": str(weights)})
    first = training_key(**key_parts)
    weights.write_bytes(b"two")
    assert training_key(**key_parts).sha256 != first.sha256


# --- runs -----------------------------------------------------------------------------------------------------


def _run(suite: Path, out: Path, **options):
    lines: list[str] = []
    result = bench.run(
        suite, out=out, progress=False, timing=False, report=False, concurrent=1, log=lines.append, **options
    )
    return result, "\n".join(lines)


def _table(result, name: str) -> pd.DataFrame:
    table = getattr(result, name)
    return table.drop(columns=[c for c in (*WALL_CLOCK[name], "reused_from") if c in table])


def _reused(result) -> dict[str, bool]:
    quality = result.quality[result.quality["kind"] == "trained"]
    column = quality.get("reused_from", pd.Series([float("nan")] * len(quality), index=quality.index))
    return {f"{e} {s}": isinstance(r, str) and bool(r) for e, s, r in zip(quality["entry"], quality["seed"], column)}


@pytest.fixture
def tiny_file(tmp_path, tiny_suite):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_suite(("mse", "l1"), seeds=[0, 1]))
    return path


def test_a_reusing_run_gives_a_fresh_runs_tables(tiny_file, tmp_path):
    """On a CPU, reused trainings give the tables and reconstructions of a fresh run, wall-clock columns aside."""
    fresh, _ = _run(tiny_file, tmp_path / "results")
    reused, log = _run(tiny_file, tmp_path / "results")
    assert "4 of 4 trainings reused from earlier runs" in log
    assert all(_reused(reused).values()) and not any(_reused(fresh).values())
    for name in ("quality", "history", "per_image"):
        text = lambda result: _table(result, name).to_csv(index=False)  # noqa: E731
        assert text(reused) == text(fresh), name
    assert (reused.folder / "metrics.csv").read_text() == (fresh.folder / "metrics.csv").read_text()
    pictures = sorted(path.name for path in (fresh.folder / "reconstructions").iterdir())
    assert pictures == sorted(path.name for path in (reused.folder / "reconstructions").iterdir())
    for picture in pictures:
        assert (reused.folder / "reconstructions" / picture).read_bytes() == (
            fresh.folder / "reconstructions" / picture
        ).read_bytes(), picture
    row = reused.quality.iloc[0]
    assert row["reused_from"].endswith(f"from {fresh.folder}")
    assert json.loads((reused.folder / "environment.json").read_text())["reused"] == 4
    from bench.report import write_report

    assert "4 of 4 trainings reused from earlier runs" in write_report(reused.folder).read_text()
    assert "reused from earlier runs" not in write_report(fresh.folder).read_text()


def test_a_resumed_run_takes_what_its_folder_lacks_from_the_store(tiny_file, tmp_path):
    first, _ = _run(tiny_file, tmp_path / "results")
    before = {name: _table(first, name).to_csv(index=False) for name in ("quality", "history", "per_image")}
    for name in ("quality", "history", "per_image"):  # as if stopped before l1 trained
        table = pd.read_csv(first.folder / f"{name}.csv", dtype=str, keep_default_na=False)
        table[table["entry"] != "l1"].to_csv(first.folder / f"{name}.csv", index=False)
    resumed, log = _run(tiny_file, tmp_path / "results", resume=first.folder)
    assert "running 2 of 4 trainings" in log and "2 of 4 trainings reused from earlier runs" in log
    assert _reused(resumed) == {"mse 0": False, "l1 0": True, "mse 1": False, "l1 1": True}
    for name in ("quality", "history", "per_image"):
        assert _table(resumed, name).to_csv(index=False) == before[name], name


def test_losses_are_timed_in_a_reusing_run(tmp_path, tiny_suite):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(("mse", "l1")))
    bench.run(suite, out=tmp_path / "results", progress=False, report=False, concurrent=1, log=lambda line: None)
    again = bench.run(
        suite, out=tmp_path / "results", progress=False, report=False, concurrent=1, log=lambda line: None
    )
    assert all(_reused(again).values())
    assert {"mse", "l1"} <= set(again.speed["entry"])


def test_fresh_retrains_everything_and_still_stores(tiny_file, tmp_path):
    _run(tiny_file, tmp_path / "results")
    store = Store(tmp_path / "own")
    first, _ = _run(tiny_file, tmp_path / "results", store=store.root)
    created = {item.key: item.created for item in store.listed()}
    again, log = _run(tiny_file, tmp_path / "results", store=store.root, fresh=True)
    assert "0 of 4 trainings reused" in log
    assert not any(_reused(again).values())
    assert set(created) == {item.key for item in store.listed()}
    assert all(item.source_run == str(again.folder) for item in store.listed())  # stored again, by this run
    reused, _ = _run(tiny_file, tmp_path / "results", store=store.root)
    assert all(_reused(reused).values())


def test_no_store_neither_reuses_nor_stores(tiny_file, tmp_path):
    store = tmp_path / "own"
    _run(tiny_file, tmp_path / "results", store=store)
    result, log = _run(tiny_file, tmp_path / "results", store=False)
    assert not any(_reused(result).values()) and "reused" not in log
    assert Store(store).size()[0] == 4


@pytest.mark.usefixtures("clean_plugins")
def test_an_edited_plugin_retrains_only_its_entry(tmp_path, tiny_suite):
    plugin = tmp_path / "scaled.py"
    plugin.write_text(PLUGIN.format(scale=2.0))
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(("mse", "scaled_mse")))
    _run(suite, tmp_path / "results", plugins=[str(plugin)])
    plugin.write_text(PLUGIN.format(scale=3.0))
    result, _ = _run(suite, tmp_path / "results", plugins=[str(plugin)])
    assert _reused(result) == {"mse 0": True, "scaled_mse 0": False}
    result, _ = _run(suite, tmp_path / "results", plugins=[str(plugin)])
    assert _reused(result) == {"mse 0": True, "scaled_mse 0": True}


def test_a_changed_weight_retrains_only_that_entry(tmp_path, tiny_suite):
    suite = tmp_path / "tiny.toml"
    mix = lambda weight: {"name": "mix", "terms": [{"loss": "mse", "weight": weight}, {"loss": "l1", "weight": 1.0}]}  # noqa: E731
    suite.write_text(tiny_suite(("mse", mix(0.5))))
    _run(suite, tmp_path / "results")
    suite.write_text(tiny_suite(("mse", mix(0.25))))
    result, _ = _run(suite, tmp_path / "results")
    assert _reused(result) == {"mse 0": True, "mix 0": False}


def _truncate(folder: Path) -> None:
    path = folder / "quality.json"
    path.write_text(path.read_text()[:20])


def _old_format(folder: Path) -> None:
    path = folder / "key.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": 0}))


def _partial(folder: Path) -> None:
    (folder / "history.json").unlink()


def _not_a_png(folder: Path) -> None:
    (folder / "reconstructions.png").write_bytes(b"junk")


@pytest.mark.parametrize("damage", [_truncate, _old_format, _partial, _not_a_png])
def test_a_damaged_store_folder_is_retrained_with_a_warning(tmp_path, tiny_suite, damage):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(("mse", "l1")))
    store = Store(tmp_path / "own")
    fresh, _ = _run(suite, tmp_path / "results", store=store.root)
    l1 = next(item.key for item in store.listed() if item.entry == "l1")
    damage(store.folder(l1))
    result, log = _run(suite, tmp_path / "results", store=store.root)
    assert f"warning: the store's folder {store.folder(l1)} cannot be used" in log
    assert _reused(result) == {"mse 0": True, "l1 0": False}
    assert _table(result, "quality").to_csv() == _table(fresh, "quality").to_csv()
    result, _ = _run(suite, tmp_path / "results", store=store.root)  # replaced by the retrained one
    assert _reused(result) == {"mse 0": True, "l1 0": True}
    assert {item.entry for item in store.listed()} == {"mse", "l1"}


BROKEN = """
from bench import register_loss


@register_loss("broken", "raises in its forward")
def broken(context):
    def forward(reconstruction, target):
        raise RuntimeError("broken on purpose")

    return forward
"""


@pytest.mark.usefixtures("clean_plugins")
def test_failed_trainings_are_not_stored(tmp_path, tiny_suite):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(("mse", "broken")))
    store = Store(tmp_path / "own")
    result, _ = _run(suite, tmp_path / "results", store=store.root, plugins=[str(plugin)])
    assert result.failed == ["broken"]
    assert [item.entry for item in store.listed()] == ["mse"]


def test_two_runs_at_once_complete_with_a_consistent_index(tmp_path, tiny_suite):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(("mse", "l1", "charbonnier")))
    store = tmp_path / "own"
    command = [sys.executable, "-m", "bench", "run", str(suite), "--no-timing", "--no-progress", "--concurrent", "1"]
    runs = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"results{index}"), "--store", str(store)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    opened = Store(store)
    listed = opened.listed()
    assert sorted(item.entry for item in listed) == ["charbonnier", "l1", "mse"]
    assert {item.key for item in listed} == {folder.name for folder in opened.trainings.iterdir()}
    assert not list(opened.tmp.iterdir())  # no half-written folder left behind
    assert all((opened.folder(item.key) / "key.json").is_file() for item in listed)
    result, _ = _run(suite, tmp_path / "results", store=store)
    assert all(_reused(result).values())


def test_store_list_prune_and_clear(tiny_file, tmp_path, capsys):
    store = tmp_path / "own"
    _run(tiny_file, tmp_path / "results", store=store)
    assert main(["store", "list", "--store", str(store), "--entry", "mse"]) == 0
    listed = capsys.readouterr().out
    assert listed.count(" mse seed ") == 2 and " l1 seed " not in listed
    assert "store: 4 trainings" in listed
    assert main(["store", "prune", "--store", str(store), "--older-than", "1"]) == 0
    assert "removed 0 trainings" in capsys.readouterr().out
    newest = Store(store).listed()[-1]  # the oldest go first
    assert main(["store", "prune", "--store", str(store), "--max-size", str(newest.size)]) == 0
    assert "removed 3 trainings; store: 1 training," in capsys.readouterr().out
    assert [folder.name for folder in Store(store).trainings.iterdir()] == [newest.key]
    assert main(["store", "prune", "--store", str(store)]) == 2
    assert main(["store", "clear", "--store", str(store)]) == 0
    assert "removed 1 training; store: 0 trainings," in capsys.readouterr().out
    assert not list(Store(store).trainings.iterdir())


def test_tests_never_touch_the_users_store():
    from bench.results.store import default_root

    assert default_root() != Path.home() / ".cache" / "lossbench"
    assert Path(os.environ["LOSSBENCH_STORE"]) == default_root()


def _fill(root: str, keys_: list[str], start) -> None:
    """One of several processes storing the same trainings at once."""
    from bench.results.keys import TrainingKey

    store = Store(Path(root))
    start.wait()
    for sha in keys_:
        row = {"entry": f"e{sha[:4]}", "seed": 0, "status": "ok", "psnr": 20.0}
        store.put(
            TrainingKey(sha, {"task": "autoencode"}),
            suite="s",
            row=row,
            history=[],
            per_image=[],
            png=None,
            source_run="r",
        )


def test_processes_storing_the_same_keys_at_once_keep_the_store_whole(tmp_path):
    import hashlib
    import multiprocessing

    context = multiprocessing.get_context("fork")
    shas = [hashlib.sha256(str(index).encode()).hexdigest() for index in range(30)]
    start = context.Barrier(4)
    workers = [context.Process(target=_fill, args=(str(tmp_path / "own"), shas, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * 4
    store = Store(tmp_path / "own")
    assert sorted(item.key for item in store.listed()) == sorted(shas)
    assert sorted(folder.name for folder in store.trainings.iterdir()) == sorted(shas)
    assert not list(store.tmp.iterdir())
    for sha in shas:
        assert store.get(keys.TrainingKey(sha, {})) is not None
