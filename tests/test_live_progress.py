"""Watching a run live (bench.train.progress.RunDisplay, bench.train.watch, bench.train.live_trackers): one display
for every training of a packed run, on a terminal and in a log; TensorBoard and MLflow curves that can be read
while the run goes on or after it was stopped; and results that progress never changes.

The packed runs train a loss from a plugin that holds each worker's training at step 6 until a condition the
test sets: both trainings are then running at once (so the display must show both before either ends), or a
tracker's files can be read mid-run, deterministically."""

from __future__ import annotations

import fcntl
import importlib.util
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.cli import main
from bench.train.live_trackers import Curves, LiveTrackers
from bench.train.progress import RunDisplay, seconds_left
from bench.train.watch import Progress
from conftest import logged_run

REPO = Path(__file__).resolve().parents[1]
HOLD_STEP = 6  # a worker's training waits before this step, having logged steps 1, 2 and 4

HOLDING_PLUGIN = """
import multiprocessing
import os
import time
from pathlib import Path

from bench import register_loss


@register_loss("held", "mse, held in a worker process before a step until the test's condition holds")
def _make(context):
    calls = [0]
    folder = Path(os.environ["LB_HOLD_DIR"])

    def loss(reconstruction, target):
        calls[0] += 1  # call 1 is the warm-up, call n + 1 step n
        if multiprocessing.parent_process() is not None and calls[0] == HOLD_STEP + 1:
            (folder / f"at-{os.getpid()}").touch()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not held_enough(folder):
                time.sleep(0.05)
        return (reconstruction - target).pow(2).mean()

    return loss


def held_enough(folder):
    if os.environ["LB_HOLD_UNTIL"] == "both":  # both trainings reached the step
        return len(list(folder.glob("at-*"))) >= 2
    return (folder / "go").exists()  # the test says go
""".replace("HOLD_STEP", str(HOLD_STEP))


@pytest.fixture
def packed(tmp_path, tiny_suite):
    """``packed(until, *options) -> (command, env)``: a run of two trainings of the held loss packed into two
    workers, the command line and its environment; ``until``: "both" or "go" (see the plugin)."""
    (tmp_path / "hold").mkdir()
    plugin = tmp_path / "held.py"
    plugin.write_text(HOLDING_PLUGIN)
    suite = tmp_path / "live.toml"
    entries = [{"name": "first", "loss": "held"}, {"name": "second", "loss": "held"}]
    suite.write_text(tiny_suite(entries, name="live", train={"steps": 12, "log_every": 2, "eval_every": 4}))

    def command(until: str, *options: str) -> tuple[list[str], dict]:
        run = ["run", str(suite), "--plugin", str(plugin), "--out", str(tmp_path / "out"), "--no-timing"]
        env = {
            **os.environ,
            "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
            "LB_HOLD_DIR": str(tmp_path / "hold"),
            "LB_HOLD_UNTIL": until,
        }
        return [sys.executable, "-m", "bench", *run, "--concurrent", "2", "--threads", "1", *options], env

    return command


def in_a_terminal(command: list[str], env: dict, timeout: float = 600) -> tuple[int, str]:
    """Runs ``command`` with a pseudo-terminal (120 x 40) as its stdin, stdout and stderr; its exit code and all
    it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, cwd=REPO, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 1)[0]:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: every process writing to the terminal is gone
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            process.kill()
        return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


def test_a_packed_run_on_a_terminal_shows_each_training_s_line_before_any_training_ends(packed):
    code, text = in_a_terminal(*packed("both"))
    assert code == 0, text
    first_result = re.search(r"(first|second) seed 0: PSNR", text)  # a result line: that training ended
    assert first_result, text
    before = text[: first_result.start()]
    for name in ("first", "second"):  # both trainings' lines, drawn by tqdm, while both still train
        assert re.search(rf"{name} seed 0 +\|[^|]*\| [1-9]\d*/12, loss \d", before), (name, before)
    assert re.search(r"trainings: 0/2 \|", before), before
    assert re.search(r"trainings: 1/2 \|", text[first_result.start() :]), text


def test_a_redirected_packed_run_logs_periodic_lines_of_both_trainings_without_carriage_returns(packed, tmp_path):
    command, env = packed("both")
    code, text = logged_run(command, tmp_path / "run.log", env)  # as `python -m bench run ... > run.log 2>&1`
    assert code == 0, text
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    ends = [index for index, line in enumerate(lines) if re.match(r"  (first|second) seed 0: PSNR", line)]
    for name in ("first", "second"):
        steps = [
            (index, int(match[1]))
            for index, line in enumerate(lines)
            if (match := re.match(rf"{name} seed 0: step (\d+)/12 \(\d+%\), loss=\S+, (eval_psnr=\S+, )?\S+ s$", line))
        ]
        # every logged step in a new tenth of the 12 steps (logged at 1, 2, 4, ...), the last included
        assert [step for _, step in steps] == [1, 2, 4, 6, 8, 10, 12], text
        assert steps[1][0] < min(ends), text  # a line of each training before either ended
    counts = [line for line in lines if re.match(r"\[\d/2\] (first|second) seed 0 finished", line)]
    assert len(counts) == 2 and counts[0].startswith("[1/2]") and "left" in counts[0], text
    assert counts[1].startswith("[2/2]"), text


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is the optional extra")
def test_ray_workers_progress_reaches_the_run_s_display(tmp_path, tiny_suite):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(["mse", "l1"], train={"steps": 10, "log_every": 1}, timing=None))
    run = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(tmp_path / "out"), "--no-timing"]
    code, text = logged_run([*run, "--workers", "2"], tmp_path / "run.log")
    assert code == 0, text
    for entry in ("mse", "l1"):  # through the Ray queue: every step is a tenth of 10
        steps = re.findall(rf"^{entry} seed 0: step (\d+)/10 ", text, flags=re.MULTILINE)
        assert steps == [str(step) for step in range(1, 11)], text
    assert re.search(r"^\[1/2\] (mse|l1) seed 0 finished", text, flags=re.MULTILINE), text


def tensorboard_steps(run: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_and_mlflow_hold_the_curves_so_far_while_a_packed_run_goes_on_and_after_it_is_stopped(
    packed, tmp_path
):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    command, env = packed("go", "--log-to", "tensorboard,mlflow")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        while len(list((tmp_path / "hold").glob("at-*"))) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the trainings never reached the held step"
            time.sleep(0.1)
        (folder,) = (tmp_path / "out" / "live").iterdir()
        logged = {"history/loss": [1, 2, 4], "history/term_held": [1, 2, 4], "history/eval_psnr": [4]}
        for name in ("first__seed0", "second__seed0"):  # each worker wrote its own, flushed as it went
            steps = tensorboard_steps(folder / "tensorboard" / name)
            assert {tag: steps[tag] for tag in logged} == logged, steps
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("live").experiment_id])
        assert sorted(run.info.run_name for run in runs) == ["first__seed0", "second__seed0"]
        for run in runs:
            assert run.info.status == "RUNNING" and run.data.tags["lossbench.run_dir"] == str(folder.resolve())
            history = client.get_metric_history(run.info.run_id, "history/loss")
            assert sorted(metric.step for metric in history) == [1, 2, 4]
        process.send_signal(signal.SIGINT)  # Ctrl-C: the driver ends its workers
        output = process.communicate(timeout=60)[0].decode()
        assert process.returncode == 130 and "resume with" in output, output
        for name in ("first__seed0", "second__seed0"):  # a run stopped halfway keeps its curves so far
            assert tensorboard_steps(folder / "tensorboard" / name)["history/loss"] == [1, 2, 4]
    finally:
        (tmp_path / "hold" / "go").touch()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_tables(out: Path, suite: Path, *options: str) -> dict[str, pd.DataFrame]:
    assert main(["run", str(suite), "--out", str(out), "--no-timing", "--concurrent", "1", "--no-store", *options]) == 0
    (folder,) = (out / "tiny").iterdir()
    return {table: pd.read_csv(folder / f"{table}.csv") for table in ("quality", "history", "per_image", "summary")}


def test_progress_on_a_terminal_in_a_log_or_off_leaves_every_table_bit_identical(
    tmp_path, tiny_suite, monkeypatch, capsys
):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(["mse", "l1"], train={"steps": 8, "log_every": 2}, timing=None))
    terminal = FakeTerminal()
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stderr", terminal)
        on_a_terminal = run_tables(tmp_path / "terminal", suite)
    assert re.search(r"mse seed 0 +\|[^|]*\| 8/8, loss", terminal.getvalue())  # the bars were drawn
    in_a_log = run_tables(tmp_path / "log", suite)
    logged = capsys.readouterr()
    assert "l1 seed 0: step 8/8 (100%)" in logged.err and "[2/2] l1 seed 0 finished" in logged.err
    off = run_tables(tmp_path / "off", suite, "--no-progress")
    quiet = capsys.readouterr()
    assert not re.search(r"seed \d: step |\[1/2\]|trainings: ", quiet.err), quiet.err
    assert "  l1 seed 0: PSNR" in quiet.out  # the result lines stay
    for table, frame in off.items():
        for other in (on_a_terminal[table], in_a_log[table]):
            pd.testing.assert_frame_equal(
                frame.drop(columns=["train_seconds", "seconds"], errors="ignore"),
                other.drop(columns=["train_seconds", "seconds"], errors="ignore"),
                check_exact=True,
            )


def test_the_time_left_comes_from_the_measured_step_times():
    planned = {("mse", 0): 100, ("ssim", 0): 100, ("mse", 1): 100, ("ssim", 1): 100}
    assert seconds_left(planned, {}, set(), 2) is None
    latest = {
        ("mse", 0): Progress("mse", 0, 100, 100, 0.1, None, 10.0),  # 0.1 s a step
        ("ssim", 0): Progress("ssim", 0, 50, 100, 0.1, None, 15.0),  # 0.3 s a step
    }
    # ssim seed 0: 50 steps left; then each entry's seed 1 at its seed 0's rate; shared by 2 at once
    assert seconds_left(planned, latest, {("mse", 0)}, 2) == pytest.approx((50 * 0.3 + 100 * 0.1 + 100 * 0.3) / 2)


def test_a_display_off_a_terminal_writes_at_most_a_line_a_tenth_and_one_per_training_done():
    stream, printed = io.StringIO(), []
    specs = [SimpleNamespace(entry=SimpleNamespace(name="mse"), seed=0, train=SimpleNamespace(steps=100))]
    display = RunDisplay(specs, 1, log=printed.append, stream=stream)
    for step in range(1, 101):
        display.tell(Progress("mse", 0, step, 100, 0.5, None, step / 10))
    display.finished("mse", 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 12 and lines[0].startswith("mse seed 0: step 1/100 (1%)")  # tenths 0 to 10, and done
    assert [line.split()[4] for line in lines[1:11]] == [f"{step}/100" for step in range(10, 101, 10)]
    assert lines[-1] == "[1/1] mse seed 0 finished"


class Flaky:
    """A tracker writer that fails at its second row."""

    rows = 0

    def __init__(self, live, name):
        pass

    def write(self, points, step):
        Flaky.rows += 1
        if Flaky.rows == 2:
            raise ConnectionError("the server went away")

    def close(self, finished, points, step):
        raise AssertionError("a writer that failed is not closed")

    def abandon(self):
        pass


def test_a_live_tracker_that_fails_is_reported_once_and_switched_off_for_that_training(monkeypatch, tmp_path):
    from bench.train import live_trackers

    monkeypatch.setitem(live_trackers.WRITERS, "tensorboard", Flaky)
    reports = []
    curves = Curves(LiveTrackers(("tensorboard",), tmp_path, "tiny", tmp_path), "mse__seed0", reports.append)
    for step in (1, 2, 4, 6):
        curves.write({"step": step, "seconds": 0.1, "loss": 0.5})
    curves.close(True, {"psnr": 20.0}, 6)
    assert Flaky.rows == 2 and len(reports) == 1
    assert "mse__seed0: tensorboard live logging failed (ConnectionError: the server went away)" in reports[0]
