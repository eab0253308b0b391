"""`bench recover`: each loss minimised over an image's pixels toward a held-out photograph, from white noise, a
blurred and a JPEG copy. mse recovers the reference from every start; a loss that ignores its input fails; the
starts match independent computations; the run report links each loss's result."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

import bench
from bench.cli import main
from bench.config.suite import Entry, Term
from bench.data.degrade import blurred, jpeg_compressed
from bench.evaluate.recover import RecoverySettings, recovery_side
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


def test_bad_settings_are_one_clear_error(tmp_path, capsys):
    (tmp_path / "recovery.toml").write_text(SUITE.replace('loss = "test_ignores_input"', 'loss = "l1"'))
    assert main(["recover", str(tmp_path / "recovery.toml"), "--steps", "0", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--steps" in error and "at least 1" in error


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
