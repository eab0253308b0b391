"""No suite name or entry name can make a run write outside its run folder; tables keep the names as given."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchInputError
from bench.config.names import MAX_STEM, check_suite_name, file_stem
from bench.config.suite import load_suite

SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")

HOSTILE_SUITE_NAMES = {
    "parent folder": "..",
    "this folder": ".",
    "dots only": "...",
    "slash": "a/b",
    "backslash": "a\\b",
    "climbs out": "../escape",
    "absolute": "/tmp/escape",
    "windows absolute": "C:\\escape",
    "empty": "",
    "NUL byte": "a\x00b",
    "newline": "a\nb",
    "very long": "x" * 300,
    "windows device": "CON",
}


@pytest.mark.parametrize("name", HOSTILE_SUITE_NAMES.values(), ids=HOSTILE_SUITE_NAMES.keys())
def test_a_hostile_suite_name_is_one_input_error(name):
    with pytest.raises(BenchInputError, match="suite name"):
        check_suite_name(name, where="s.toml: name")


def test_suite_name_dot_dot_cannot_put_the_run_beside_out(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = ".."\n[data]\nresolution = 16\nimages = 3\neval_images = 1\n[train]\nsteps = 1\n'
        '[[entry]]\nname = "mse"\nloss = "mse"\n'
    )  # small, should the check ever fail
    out = tmp_path / "out"
    out.mkdir()
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing"]) == 2
    assert "s.toml: name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s.toml"] and not list(out.iterdir())


def test_plain_suite_and_entry_names_keep_their_file_names():
    assert check_suite_name("all_losses-v1.2", where="") == "all_losses-v1.2"
    for name in ("mse", "ms-ssim", "l1_0.8", "Perceptual.VGG"):
        assert file_stem(name) == name


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, unprintable characters as \\uXXXX escapes."""
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in text) + '"'


HOSTILE_ENTRY_NAMES = [
    "../../escape",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "a_b",
    "a:b",
    "C:\\x",
    "CON",
    "nul.txt",
    "x" * 300,
    "x" * 300 + "y",
    "ssim + 0.2*l1",
    "日本語",
    "1e3",
    " lead",
]


def test_entry_names_map_to_distinct_plain_file_names():
    stems = [file_stem(name) for name in HOSTILE_ENTRY_NAMES]
    for name, stem in zip(HOSTILE_ENTRY_NAMES, stems):
        assert SAFE_FILE_NAME.fullmatch(stem), (name, stem)
        assert len(stem) <= MAX_STEM + 9 and stem.upper().split(".")[0] not in ("CON", "NUL")
    assert len({stem.casefold() for stem in stems}) == len(stems)  # no two collide, even ignoring case


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", "nul\x00", "rtl\u202eevil", "zero\u200bwidth"])
def test_entry_names_with_control_or_invisible_characters_are_input_errors(tmp_path, name):
    suite = tmp_path / "s.toml"
    suite.write_text(f'[[entry]]\nname = {toml_string(name)}\nloss = "mse"\n')
    with pytest.raises(BenchInputError, match="contains control or invisible characters") as error:
        load_suite(suite)
    assert "entry[0].name" in str(error.value)


def test_entry_names_whose_files_collide_are_input_errors(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[entry]]\nname = "MSE"\nloss = "mse"\n[[entry]]\nname = "mse"\nloss = "mse"\n')
    with pytest.raises(BenchInputError, match="'MSE' and 'mse' would share the file name"):
        load_suite(suite)


def test_hostile_entry_names_write_only_inside_the_run_folder(tmp_path, monkeypatch, tiny_suite):
    """Entry names of every hostile kind through a whole run, checkpoints included: every file written lands
    in the run folder, the tables keep each name exactly, and the report finds each entry's reconstructions."""
    import bench.results
    from bench.report import load_run
    from bench.report.plots import reconstruction_strips

    outside = tmp_path / "outside"
    names = [*HOSTILE_ENTRY_NAMES, str(outside / "absolute")]
    entries = "\n".join(f'[[entry]]\nname = {toml_string(name)}\nloss = "mse"' for name in names)
    suite = tmp_path / "s.toml"
    suite.write_text(
        tiny_suite(
            entries,
            name="hostile",
            data={"scale": None, "images": 3, "eval_crops": 2},
            train={"steps": 2, "batch_size": 1, "log_every": None, "eval_every": 0, "checkpoint_every": 1},
            timing=None,
        )
    )
    written, real_replace = [], os.replace
    monkeypatch.setattr(
        bench.results.os, "replace", lambda src, dst: (written.append(Path(dst)), real_replace(src, dst))
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing"]) == 0

    (folder,) = (out / "hostile").iterdir()
    assert written and all(path.resolve().is_relative_to(folder.resolve()) for path in written), written
    assert any(path.parent.name == "checkpoints" for path in written)  # the checkpoints were written, then removed
    assert not outside.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out", "s.toml"]
    quality = pd.read_csv(folder / "quality.csv", dtype={"entry": str}, keep_default_na=False)
    assert list(quality.loc[quality["kind"] == "trained", "entry"]) == names
    rows, _ = reconstruction_strips(load_run(folder), names)
    assert [name for name, seed, strip in rows[1:] if strip is not None] == names
