"""`bench doctor` on a CPU machine: devices, packages, cached weights, and exit 0 whatever a probe does."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import doctor
from bench.cli import main
from bench.losses import pretrained
from bench.losses.pretrained import imagenet_weights_file
from bench.results import device_name

REPO = Path(__file__).resolve().parents[1]


def run_doctor(capsys, *flags: str) -> str:
    assert main(["doctor", "--no-network", *flags]) == 0
    return capsys.readouterr().out


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """A fresh torch hub cache, so the tests do not depend on what this machine has cached."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_names_the_cpu_and_the_versions(capsys):
    out = run_doctor(capsys)
    assert f"cpu: {device_name(torch.device('cpu'))}" in out
    assert f"torch {torch.__version__}" in out
    if not torch.cuda.is_available():
        assert "cuda: not available" in out and 'device = "auto" would use: cpu' in out
    assert "check failed" not in out


def test_lists_every_optional_package_with_its_version_or_not_installed(capsys):
    lines = run_doctor(capsys).splitlines()
    for dist, _, _ in doctor.OPTIONAL_PACKAGES:
        (line,) = [line for line in lines if line.split()[:1] == [dist]]
        try:
            expected = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            expected = "not installed"
        assert expected in line, line
    required = next(line for line in lines if line.strip().startswith("required:"))
    assert f"pytorch-msssim {importlib.metadata.version('pytorch-msssim')}" in required


def test_reports_a_weight_file_in_the_hub_cache_as_cached(capsys, empty_hub):
    cached, _ = imagenet_weights_file("vgg19")
    assert cached.parent == empty_hub  # TORCH_HOME is what torch.hub reads
    empty_hub.mkdir(parents=True)
    cached.write_bytes(b"\0" * 3 * 2**20)
    out = run_doctor(capsys)
    assert f"vgg19: cached (3 MB, {cached.name})" in out
    assert "alexnet: not cached" in out
    assert "not cached: vgg16, alexnet, squeezenet1_1" in out


def test_says_what_happens_to_missing_weights_offline(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "_reachable", lambda host: False)
    assert main(["doctor"]) == 0
    assert 'not reachable, so weights="auto" falls back to seeded random' in capsys.readouterr().out


def test_names_the_data_sources(capsys):
    out = run_doctor(capsys)
    assert 'source = "bundled": ' in out and "photographs available offline" in out
    assert "unavailable:" not in out  # every bundled photograph ships with the installed packages
    assert 'source = "folder"' in out


@pytest.mark.parametrize("target, name", [(torch.cuda, "is_available"), (pretrained, "imagenet_weights_file")])
def test_exits_zero_and_reports_a_probe_that_raises(capsys, monkeypatch, target, name):
    def broken(*args, **kwargs):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(target, name, broken)
    out = run_doctor(capsys)
    assert "check failed: RuntimeError: probe exploded" in out
    assert out.count("check failed") == 1
    assert "packages:" in out and 'source = "folder"' in out  # the sections after it still ran


def test_command_line_exits_zero():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "doctor", "--no-network"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "pretrained weights:" in done.stdout and "packages:" in done.stdout
