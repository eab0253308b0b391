"""A run whose output goes to a file writes plain progress lines, not redrawn bars."""

from __future__ import annotations

import sys

from conftest import logged_run


def test_a_redirected_run_logs_plain_progress_lines_without_carriage_returns(tmp_path, tiny_suite):
    suite = tmp_path / "tiny_log.toml"
    suite.write_text(
        tiny_suite(
            name="tiny_log",
            seeds=None,
            data={"eval_crops": 2},
            train={"steps": 20, "log_every": 2, "eval_every": 0},
            timing=None,
        )
    )
    code, text = logged_run(  # stdout and stderr both a file, as `python -m bench run ... > run.log 2>&1`
        [sys.executable, "-m", "bench", "run", str(suite), "--out", str(tmp_path / "out"), "--no-timing"],
        tmp_path / "run.log",
    )
    assert code == 0, text
    assert "\r" not in text
    steps = [line for line in text.splitlines() if line.startswith("mse seed 0: step ")]
    # a line at the logged steps (1, 2, 4, ...), one per tenth of the steps at most (the run's display:
    # bench.train.progress.RunDisplay), then the training's count
    assert [line.split()[4] for line in steps] == ["1/20"] + [f"{step}/20" for step in range(2, 21, 2)]
    assert all("loss=" in line for line in steps)
    assert "\n[1/1] mse seed 0 finished\n" in text
