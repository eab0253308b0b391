"""Other implementations timed beside ours: CUDA-only kernels are skipped on a CPU, a broken one is left out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.speed import references
from bench.config.suite import load_suite

SUITE = """
name = "refs"
[timing]
resolution = 16
batch_size = 1
warmup = 0
min_repeats = 2
min_time_s = 0.0
[[entry]]
name = "mse"
loss = "mse"
"""


def _raises(message: str):
    def factory(kind: str):
        raise ImportError(message)

    return factory


def _fails_when_run(kind: str):
    def loss(x, y):
        raise RuntimeError("no kernel image is available for execution on the device")

    return loss


def test_fused_cuda_ssim_kernels_are_registered_for_ssim():
    labels = {label for _, label, _ in references.REFERENCES["ssim"]}
    assert {"fussim", "fused-ssim"} <= labels and {"fussim", "fused-ssim"} <= references.CUDA_ONLY


def test_cuda_only_references_are_not_built_on_a_cpu(monkeypatch):
    # "os" stands in for an installed package; the factory would fail the test if it were called.
    monkeypatch.setitem(
        references.REFERENCES,
        "mse",
        [("os", "fussim", _raises("built on a CPU")), ("os", "works", lambda kind: F.mse_loss)],
    )
    lines = []
    found = references.installed_references("mse", torch.device("cpu"), log=lines.append)
    assert [label for label, _ in found] == ["works"]
    assert lines == ["  mse: fussim is installed but CUDA-only; not timed on cpu"]


def test_a_reference_that_fails_to_load_or_run_is_left_out(monkeypatch, tmp_path):
    monkeypatch.setitem(
        references.REFERENCES,
        "mse",
        [
            ("os", "breaks-at-import", _raises("undefined symbol: _ZN3c10")),
            ("os", "breaks-at-run", _fails_when_run),
            ("os", "works", lambda kind: F.mse_loss),
        ],
    )
    (tmp_path / "refs.toml").write_text(SUITE)
    lines = []
    table = references.time_references(load_suite(tmp_path / "refs.toml"), torch.device("cpu"), log=lines.append)
    assert list(table["implementation"]) == ["lossbench", "works"]
    assert (table["median_ms"] > 0).all() and table["ratio_to_fastest"].min() == 1.0
    log = "\n".join(lines)
    assert "breaks-at-import is installed but failed to load (ImportError: undefined symbol" in log
    assert "breaks-at-run failed (RuntimeError: no kernel image" in log


def test_speed_references_on_losses_nobody_else_implements(tmp_path, capsys):
    from bench.cli import main

    (tmp_path / "refs.toml").write_text(SUITE)
    assert main(["speed", str(tmp_path / "refs.toml"), "--device", "cpu", "--out", str(tmp_path), "--references"]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    (folder,) = (tmp_path / "refs").iterdir()
    assert (folder / "speed.csv").is_file() and not (folder / "speed_references.csv").exists()
