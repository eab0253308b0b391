"""A run whose output goes to a file writes plain progress lines, not redrawn bars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny_log"
[data]
resolution = 16
scale = 0.125
images = 4
eval_images = 1
eval_crops = 2
[model]
latent_dim = 64
width = 16
[train]
steps = 20
batch_size = 2
log_every = 5
eval_every = 0
[[entry]]
name = "mse"
loss = "mse"
"""


def test_a_redirected_run_logs_plain_progress_lines_without_carriage_returns(tmp_path):
    suite = tmp_path / "tiny_log.toml"
    suite.write_text(TINY)
    log = tmp_path / "run.log"
    with log.open("wb") as file:  # stdout and stderr both a file, as `python -m bench run ... > run.log 2>&1`
        done = subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--out", str(tmp_path / "out"),
                               "--no-timing"], stdout=file, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=600)
    text = log.read_bytes().decode()
    assert done.returncode == 0, text
    assert "\r" not in text
    steps = [line for line in text.splitlines() if line.startswith("mse seed 0: step ")]
    assert [line.split()[4] for line in steps] == [f"{step}/20" for step in range(2, 21, 2)]
    assert all("loss=" in line for line in steps)
