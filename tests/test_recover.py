"""`bench recover`: each loss minimised over an image's pixels toward a held-out photograph, from white noise, a
blurred and a JPEG copy. mse recovers the reference from every start; a loss that ignores its input fails; the
starts match independent computations; the run report links each loss's result."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

import bench
from bench.cli import main
from bench.config.suite import Entry, Term, parse_suite
from bench.errors import BenchInputError
from bench.data.degrade import blurred, jpeg_compressed
from bench.data.images import ImageSet
from bench.evaluate.recover import (
    RecoverySettings,
    held_out_crops,
    recover_entry,
    recovery_side,
    starting_points,
)
from bench.losses import loss_names, register_loss
from bench.report import Run
from bench.report.html import render

SUITE = """
name = "recovery"
[data]
resolution = 32
[[entry]]
name = "mse"
loss = "mse"
[[entry]]
name = "ignores"
loss = "test_ignores_input"
"""


class _IgnoresInput(torch.nn.Module):
    """A broken loss: its value depends on the target only, so its gradient with respect to the image is 0."""

    def forward(self, reconstruction, target):
        return (target - 0.5).abs().mean() + 0 * reconstruction.sum()


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    if "test_ignores_input" not in loss_names():
        register_loss("test_ignores_input", "test only: ignores its input")(lambda context: _IgnoresInput())
    root = tmp_path_factory.mktemp("recover")
    (root / "recovery.toml").write_text(SUITE)
    result = bench.recover(root / "recovery.toml", out=root / "results", steps=400, lr=0.02, log=lambda line: None)
    return root, result


def test_mse_recovers_the_reference_from_every_start(recovery):
    _, result = recovery
    mse = result.table[result.table["entry"] == "mse"].set_index("start")
    assert list(mse.index) == ["noise", "blur", "jpeg"] and (mse["side"] == 32).all()
    assert (mse["psnr_final"] > 40).all() and mse["recovered"].all(), mse[["psnr_start", "psnr_final"]]
    assert (mse["psnr_start"] < 30).all()  # every start is far enough away to need recovering
    assert (mse["loss_final"] < mse["loss_start"]).all() and (mse["ssim_final"] > 0.99).all()
    assert list(result.table.columns) == [
        *["entry", "start", "side", "steps", "psnr_start", "psnr_final", "ssim_start", "ssim_final"],
        *["loss_start", "loss_final", "recovered", "error"],
    ]
    assert (mse["error"] == "").all()


def test_a_loss_that_ignores_its_input_is_reported_as_failing(recovery):
    _, result = recovery
    ignores = result.table[result.table["entry"] == "ignores"].set_index("start")
    assert not ignores["recovered"].any()
    np.testing.assert_allclose(ignores["psnr_final"], ignores["psnr_start"], atol=1e-4)  # it never moved
    page = result.page.read_text()
    section = re.search(r'<section id="entry-1">(.*?)</section>', page, re.S).group(1)
    assert "ignores at 32\u00d732 px" in section and section.count('badge dnl">failed') == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 6  # one strip per start of each loss


def test_the_run_report_links_each_loss_to_its_recovery(recovery, tmp_path):
    root, result = recovery
    run_folder = root / "results" / "recovery" / "20260101-000000"
    run_folder.mkdir()
    summary = pd.DataFrame({"entry": ["mse", "ignores", "other"], "kind": "trained", "psnr": [30.0, 10.0, 20.0]})
    page = render(Run(run_folder, {}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), summary))
    href = f"../recover/{result.folder.name}/recovery.html"
    assert f'href="{href}#entry-0">recovery: 3 of 3 starts</a>' in page
    assert f'href="{href}#entry-1">recovery: 0 of 3 starts</a>' in page
    assert page.count('class="recovery"') == 2  # "other" was not recovered: no link
    assert (run_folder / href).resolve() == result.page.resolve()


def test_the_blurred_and_jpeg_starts_match_scipy_and_a_pil_jpeg_file(tmp_path):
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    expected = np.stack(
        [ndimage.gaussian_filter(channel, 2.0, mode="mirror", truncate=3.0) for channel in image[0].numpy()]
    )
    np.testing.assert_allclose(blurred(image, 2.0)[0].numpy(), expected, atol=1e-5)
    pixels = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "start.jpg", quality=10)
    with Image.open(tmp_path / "start.jpg") as file:
        from_file = np.asarray(file.convert("RGB"), dtype=np.float32) / 255
    decoded = jpeg_compressed(image, 10)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(decoded, from_file)
    assert np.abs(decoded - pixels / 255).mean() > 0.02  # quality 10 visibly distorts


def test_losses_are_recovered_at_their_design_size():
    settings = RecoverySettings()
    entry = lambda *losses: Entry("e", tuple(Term(loss, 1.0, {}, loss) for loss in losses))
    assert recovery_side(entry("mse"), 32, settings) == 32
    assert recovery_side(entry("mse", "fsim"), 32, settings) == 256
    assert recovery_side(entry("ms_ssim"), 32, settings) == 161
    assert recovery_side(entry("ssim"), 32, settings) == 32  # its 11 px window is no image size
    assert recovery_side(entry("ms_ssim"), 256, settings) == 256  # never below the suite's crops
    assert recovery_side(entry("fsim"), 32, RecoverySettings(side=64)) == 64


def test_held_out_crops_are_cut_at_the_recovery_side_from_the_photographs_at_full_size():
    text = SUITE.replace("resolution = 32", "resolution = 32\nscale = 0.5").replace("test_ignores_input", "l1")
    suite = parse_suite(tomllib.loads(text), path=Path("s.toml"))
    crops = held_out_crops(suite, 48, RecoverySettings(images=2)).eval
    assert crops.shape == (2, 3, 48, 48)
    full_size = dataclasses.replace(suite, data=dataclasses.replace(suite.data, scale=1.0))
    assert torch.equal(crops, held_out_crops(full_size, 48, RecoverySettings(images=2)).eval)


def test_bad_settings_are_one_clear_error(tmp_path, capsys):
    (tmp_path / "recovery.toml").write_text(SUITE.replace('loss = "test_ignores_input"', 'loss = "l1"'))
    assert main(["recover", str(tmp_path / "recovery.toml"), "--steps", "0", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--steps" in error and "at least 1" in error


@pytest.mark.parametrize(
    "option, accepted, refused, fix",
    [
        ("--steps", [1], [0], "use at least 1, e.g. 2000"),
        ("--images", [1], [0], "use at least 1"),
        ("--lr", [1e-9], [0.0, math.inf], "use a positive number, e.g. 0.01"),
        ("--jpeg-quality", [1, 95], [0, 96], "use 1 to 95, e.g. 10"),
        ("--blur-sigma", [1e-9], [0.0, math.nan], "use e.g. 2.0"),
        ("--side", [0], [-1], "use 0 for each loss's design size, or a side in pixels"),
    ],
)
def test_each_recovery_setting_is_refused_just_past_its_range_by_its_option(option, accepted, refused, fix):
    name = option[2:].replace("-", "_")
    for value in accepted:
        RecoverySettings(**{name: value}).validate()
    for value in refused:
        with pytest.raises(BenchInputError) as raised:
            RecoverySettings(**{name: value}).validate()
        assert (raised.value.where, raised.value.fix) == (option, fix)
        assert raised.value.message == f"recovery setting {name} is out of range: {value!r}"


def test_the_noise_start_is_drawn_from_the_settings_seed_alone():
    """A recovery is reproducible: its white-noise start depends on ``seed``, not on the global random state."""
    references = torch.full((1, 3, 8, 8), 0.5)
    torch.manual_seed(1)
    first = starting_points(references, RecoverySettings(seed=0))["noise"]
    torch.manual_seed(2)
    assert torch.equal(starting_points(references, RecoverySettings(seed=0))["noise"], first)
    assert not torch.equal(starting_points(references, RecoverySettings(seed=1))["noise"], first)


class _NaNGradient(torch.nn.Module):
    def forward(self, reconstruction, target):
        return (reconstruction - reconstruction.detach()).sqrt().sum() * 0  # finite value, NaN gradient (0 * inf)


def test_a_nan_gradient_fails_each_start_on_its_own_and_a_failing_loss_fails_once():
    if "test_recover_nan_gradient" not in loss_names():
        register_loss("test_recover_nan_gradient", "test only: a finite loss with a NaN gradient")(
            lambda c: _NaNGradient()
        )
    if "test_recover_bad_factory" not in loss_names():
        register_loss("test_recover_bad_factory", "test only: cannot be built", power=1.0)(
            lambda context, power: (_ for _ in ()).throw(ValueError(f"power {power} refused"))
        )
    images = ImageSet((), torch.full((1, 3, 16, 16), 0.5), (), ("grey",), ("grey",), "")
    settings = RecoverySettings(steps=3, lr=0.01)
    nan = recover_entry(
        Entry("nan", (Term("test_recover_nan_gradient", 1.0, {}, "n"),)), images, 16, settings, torch.device("cpu")
    )
    assert [row["start"] for row in nan.rows] == ["noise", "blur", "jpeg"]  # every start tried
    for row in nan.rows:
        assert row["recovered"] is False and row["steps"] == 3, row
        assert row["error"] == "FloatingPointError: non-finite loss or gradient at step 0", row
    bad = recover_entry(
        Entry("bad", (Term("test_recover_bad_factory", 1.0, {}, "b"),)), images, 16, settings, torch.device("cpu")
    )
    assert bad.rows == [{"entry": "bad", "side": 16, "steps": 3, "start": "", "error": "ValueError: power 1.0 refused"}]


@pytest.mark.parametrize("reference, offset", [(0.9, 0.3), (0.1, -0.3)], ids=["above white", "below black"])
def test_pixels_stay_in_the_image_range_while_they_are_optimised(monkeypatch, reference, offset):
    """A loss whose minimum lies beyond white (a 0.9 reference + 0.3), or black (0.1 - 0.3), stops at white or
    black: 20 dB, and the loss there (1 - 1.2)^2 = 0.04, not 0."""
    name = f"test_recover_offset_{offset:g}"
    if name not in loss_names():
        register_loss(name, f"test only: minimum at the target {offset:+g}")(
            lambda context: lambda reconstruction, target: (reconstruction - target - offset).square().mean()
        )
    references = torch.full((1, 3, 16, 16), reference)
    monkeypatch.setattr(
        "bench.evaluate.recover.starting_points", lambda references, settings: {"grey": 0.5 + 0 * references}
    )
    images = ImageSet((), references, (), ("light",), ("light",), "")
    entry = Entry("beyond", (Term(name, 1.0, {}, name),))
    (row,) = recover_entry(entry, images, 16, RecoverySettings(steps=300, lr=0.02), torch.device("cpu")).rows
    assert row["psnr_final"] == pytest.approx(20.0, abs=0.05), row
    assert row["loss_final"] == pytest.approx(0.04, rel=1e-3), row
    # SSIM of two flat images, by hand: only the luminance term, (2 r f + C1) / (r^2 + f^2 + C1), C1 = (0.01 x 1)^2
    final = 1.0 if offset > 0 else 0.0
    expected = (2 * reference * final + 1e-4) / (reference**2 + final**2 + 1e-4)
    assert row["ssim_final"] == pytest.approx(expected, rel=1e-3), row


def test_each_task_of_a_run_of_several_links_the_suites_recovery(recovery):
    root, result = recovery
    parent = root / "results" / "recovery" / "20260101-000001"
    (parent / "denoise").mkdir(parents=True)
    (parent / "environment.json").write_text(json.dumps({"suite": "recovery", "tasks": ["denoise"]}))
    summary = pd.DataFrame({"entry": ["mse"], "kind": "trained", "psnr": [30.0]})
    page = render(Run(parent / "denoise", {}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), summary))
    href = f"../../recover/{result.folder.name}/recovery.html"
    assert f'href="{href}#entry-0">recovery: 3 of 3 starts</a>' in page
    assert (parent / "denoise" / href).resolve() == result.page.resolve()


class _Offset(torch.nn.Module):
    """A loss whose minimum is the target moved by ``offset`` toward mid-grey at every pixel: minimised, the
    image's PSNR is -20 log10(offset) dB, wherever it starts."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, reconstruction, target):
        shifted = torch.where(target < 0.5, target + self.offset, target - self.offset)
        return (reconstruction - shifted).pow(2).mean()


def _register_test_losses():
    if "test_offset" not in loss_names():
        register_loss("test_offset", "test only: minimum at the target moved by offset", offset=0.1)(
            lambda context, offset: _Offset(offset)
        )
    if "test_ignores_input" not in loss_names():
        register_loss("test_ignores_input", "test only: ignores its input")(lambda context: _IgnoresInput())


# The PSNR each entry's minimum lies at: around the 30 dB threshold, and at 20 dB (a loss that stops half way).
FINAL_DB = {"at20": 20.0, "at29": 29.0, "at31": 31.0, "at38": 38.0}
BETWEEN = 'name = "between"\n[data]\nresolution = 32\n' + "".join(
    f'[[entry]]\nname = "{name}"\nloss = "test_offset"\noffset = {10 ** (-db / 20)!r}\n'
    for name, db in FINAL_DB.items()
)


def test_a_start_is_recovered_only_at_a_final_psnr_of_30_db_or_more(tmp_path):
    """Losses that stop at 20, 29, 31 and 38 dB, from white noise (far below all four): only the last two
    recover it. The threshold is the settings' default, so a default other than 30 dB fails here too."""
    _register_test_losses()
    (tmp_path / "between.toml").write_text(BETWEEN)
    result = bench.recover(tmp_path / "between.toml", out=tmp_path, steps=300, lr=0.02, log=lambda line: None)
    table = result.table.set_index(["entry", "start"])
    written = pd.read_csv(result.folder / "recovery.csv").set_index(["entry", "start"])
    for name, db in FINAL_DB.items():
        noise = table.loc[(name, "noise")]
        assert noise["psnr_start"] < 10 and noise["psnr_final"] == pytest.approx(db, abs=0.05), noise
        assert bool(noise["recovered"]) == (db >= 30) == bool(written.loc[(name, "noise"), "recovered"]), name
    for start in ("blur", "jpeg"):  # from starts between 20 and 30 dB, too: recovered at 31 and 38 dB only
        assert [bool(table.loc[(name, start), "recovered"]) for name in FINAL_DB] == [False, False, True, True]


def test_a_start_already_above_30_db_that_does_not_rise_1_db_is_not_recovered():
    """Smooth references whose blurred (0.5 px) and JPEG (quality 95) copies are well above 30 dB: a loss that
    ignores its input leaves them there, not recovered; mse, which moves them closer, recovers them."""
    _register_test_losses()
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    references = torch.stack([0.2 + 0.6 * x, 0.2 + 0.6 * y, 0.5 + 0.3 * x * y])[None]
    images = ImageSet((), references, (), ("ramp",), ("ramp",), "")
    settings = RecoverySettings(steps=200, lr=0.02, blur_sigma=0.5, jpeg_quality=95)
    rows = {}
    for loss in ("test_ignores_input", "mse"):
        entry = Entry(loss, (Term(loss, 1.0, {}, loss),))
        rows[loss] = {row["start"]: row for row in recover_entry(entry, images, 32, settings, torch.device("cpu")).rows}
    for start in ("blur", "jpeg"):
        ignored, mse = rows["test_ignores_input"][start], rows["mse"][start]
        assert ignored["psnr_start"] > 40 and ignored["psnr_final"] == ignored["psnr_start"]
        assert not ignored["recovered"], ignored
        assert mse["psnr_final"] >= mse["psnr_start"] + 1 and mse["recovered"], mse
    assert not rows["test_ignores_input"]["noise"]["recovered"] and rows["mse"]["noise"]["recovered"]


def test_a_start_above_30_db_is_recovered_by_a_rise_of_1_db_and_not_by_less(monkeypatch):
    """From a start at exactly 35 dB (a grey crop moved by a constant), a loss that stops at 36.5 dB recovers it (a
    1.5 dB rise) and one that stops at 35.5 dB does not (0.5 dB): the rise rule alone decides, above 30 dB."""
    _register_test_losses()
    references = torch.full((1, 3, 32, 32), 0.5)
    start = references + 10 ** (-35 / 20)
    monkeypatch.setattr("bench.evaluate.recover.starting_points", lambda references, settings: {"near": start})
    images = ImageSet((), references, (), ("grey",), ("grey",), "")
    settings = RecoverySettings(steps=300, lr=0.005)
    for final_db, recovered in ((36.5, True), (35.5, False)):
        entry = Entry("offset", (Term("test_offset", 1.0, {"offset": 10 ** (-final_db / 20)}, "test_offset"),))
        (row,) = recover_entry(entry, images, 32, settings, torch.device("cpu")).rows
        assert row["psnr_start"] == pytest.approx(35, abs=0.01), row
        assert row["psnr_final"] == pytest.approx(final_db, abs=0.05), row
        assert row["recovered"] is recovered, row
