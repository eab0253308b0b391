"""Learning-rate schedules (bench.train.schedules): the rate of every step against the closed form written out
here, a resume mid-schedule, the suite keys' errors, and a constant schedule reproducing the tables of the code
before schedules existed."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch

import bench.train.loop as loop
from bench.cli import main
from bench.config.plan import make_plan
from bench.config.suite import TrainConfig, parse_suite
from bench.train.schedules import build_scheduler

from conftest import interrupted_and_resumed, tiny_training

GOLDEN = Path(__file__).parent / "data" / "constant_schedule"


def closed_form(schedule: str, step: int, steps: int, lr: float, warmup: int, final: float) -> float:
    """Step ``step`` (1-based): a ramp to ``lr`` over ``warmup`` steps, then constant, or a cosine or linear
    decay that would reach ``final`` one step after the last."""
    if step <= warmup:
        return lr * step / warmup
    t, span = step - warmup - 1, steps - warmup
    if schedule == "cosine":
        return final + (lr - final) * (1 + math.cos(math.pi * t / span)) / 2
    if schedule == "linear":
        return lr + (final - lr) * t / span
    return lr


def rates(train: TrainConfig) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=train.lr)
    scheduler = build_scheduler(optimizer, train)
    seen = []
    for _ in range(train.steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
@pytest.mark.parametrize(
    ("warmup", "warmup_steps", "min_lr", "min_lr_rate", "final"),
    [(0, 0, 0.0, 0.0, 0.0), (10, 10, 1e-5, 0.0, 1e-5), (0.25, 25, 0.0, 0.1, 1e-4), (1, 1, 0.0, 0.0, 0.0)],
)
def test_every_step_follows_the_closed_form(schedule, warmup, warmup_steps, min_lr, min_lr_rate, final):
    if schedule == "constant":
        min_lr = min_lr_rate = final = 0.0
    train = TrainConfig(steps=100, lr=1e-3, schedule=schedule, warmup=warmup, min_lr=min_lr, min_lr_rate=min_lr_rate)
    expected = [closed_form(schedule, k, 100, 1e-3, warmup_steps, final) for k in range(1, 101)]
    assert rates(train) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def _tiny_training(tmp_path, schedule: str):
    train = (
        f'steps = 12\nlog_every = 1\nema = 0.9\ncheckpoint_every = 5\nschedule = "{schedule}"\nwarmup = 3\nlr = 3e-3'
    )
    return tiny_training(tmp_path, "mse", train)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_training_logs_the_scheduled_rate(tmp_path, schedule):
    spec, model, loss, images = _tiny_training(tmp_path, schedule)
    result = loop.train(spec, model, loss, images, torch.device("cpu"), show_progress=False)
    logged = [row["lr"] for row in result.history]
    assert logged == pytest.approx([closed_form(schedule, k, 12, 3e-3, 3, 0.0) for k in range(1, 13)], rel=1e-9)


def test_resuming_mid_schedule_gives_the_uninterrupted_training(tmp_path, monkeypatch):
    # stopped after step 5, in the decay
    whole, resumed = interrupted_and_resumed(monkeypatch, tmp_path / "mse.pt", *_tiny_training(tmp_path, "cosine"))
    assert resumed.resumed_from_step == 5
    for (key, x), (_, y) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(x, y), key
    drop_seconds = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert drop_seconds(resumed.history) == drop_seconds(whole.history)


@pytest.mark.parametrize(
    ("train", "key", "fix"),
    [
        ('schedule = "cosin"', "train.schedule", "did you mean 'cosine'"),
        ('schedule = "cosine"\nwarmup = 1.5', "train.warmup", "fraction"),
        ('schedule = "cosine"\nwarmup = 4', "train.warmup", "fewer steps"),
        ('schedule = "cosine"\nmin_lr = 1e-5\nmin_lr_rate = 0.1', "train.min_lr_rate", "once"),
        ("min_lr = 1e-5", "train.min_lr", "never decays"),
        ('schedule = "linear"\nmin_lr = 0.1', "train.min_lr", "below every train.lr"),
        ('schedule = "linear"\nmin_lr_rate = 1.0', "train.min_lr_rate", "[0, 1)"),
        ('loss_networks = "fp16"', "train.loss_networks", "bf16"),
    ],
)
def test_validate_explains_a_bad_schedule(tmp_path, tiny_suite, capsys, train, key, fix):
    suite = tmp_path / "bad.toml"
    suite.write_text(tiny_suite(train=train + "\nsteps = 4\nlr = 1e-3"))
    assert main(["validate", str(suite)]) == 2
    error = capsys.readouterr().err
    assert key in error and fix in error and "Traceback" not in error


def test_an_entry_may_have_its_own_schedule(tmp_path, tiny_suite):
    text = tiny_suite(["mse", {"name": "l1", "loss": "l1", "train": {"schedule": "cosine", "warmup": 0.5}}])
    plan = make_plan(parse_suite(tomllib.loads(text), path=tmp_path / "s.toml"), "none")
    assert [(spec.train.schedule, spec.train.warmup_steps) for spec in plan] == [("constant", 0), ("cosine", 2)]


@pytest.mark.slow
def test_a_constant_schedule_reproduces_the_tables_of_the_code_before_schedules(tmp_path):
    """The golden tables were written by the commit before schedules and loss-network precision existed (f700d5f)
    from the same suite; a constant rate with float32 loss networks must give them bit for bit on the CPU kind
    that wrote them (AVX512; other kernels round differently, so elsewhere to 1e-5)."""
    suite = tmp_path / "suite.toml"
    suite.write_text((GOLDEN / "suite.toml").read_text().replace("ema = 0.9", 'ema = 0.9\nloss_networks = "fp32"'))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
    (run,) = (tmp_path / "constant_golden").iterdir()
    exact = torch.backends.cpu.get_cpu_capability() == "AVX512"
    for table, key in (("quality", ["entry", "seed"]), ("history", ["entry", "seed", "step"])):
        golden = pd.read_csv(GOLDEN / f"{table}.csv").drop(columns=["train_seconds", "seconds"], errors="ignore")
        now = pd.read_csv(run / f"{table}.csv")[golden.columns]
        golden, now = (frame.sort_values(key).reset_index(drop=True) for frame in (golden, now))
        pd.testing.assert_frame_equal(now, golden, check_exact=exact, rtol=1e-5)
    quality = pd.read_csv(run / "quality.csv")
    assert set(quality.loc[quality["kind"] == "trained", "schedule"]) == {"constant"}


def test_the_rate_search_trains_every_rate_on_the_suites_schedule(tmp_path, tiny_suite):
    from bench.train.rates import search_suite

    text = tiny_suite(["mse", "l1"], train={"lr": [1e-3, 3e-3], "schedule": "linear", "min_lr_rate": 0.1})
    suite = parse_suite(tomllib.loads(text), path=tmp_path / "s.toml")
    plan = make_plan(search_suite(suite, (1e-3, 3e-3)), "none")
    assert len(plan) == 4
    assert {(spec.train.schedule, spec.train.min_lr_rate) for spec in plan} == {("linear", 0.1)}
    rates = sorted((spec.train.lr, spec.train.final_lr) for spec in plan)
    assert [value for pair in rates for value in pair] == pytest.approx(
        [1e-3, 1e-4, 1e-3, 1e-4, 3e-3, 3e-4, 3e-3, 3e-4]
    )


def test_a_schedule_the_suite_did_not_check_is_refused_by_name():
    """Suites are validated first; a ``TrainConfig`` made in Python reaches ``build_scheduler`` unchecked."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=r"^schedule must be one of constant, cosine, linear, got 'cosin'$"):
        build_scheduler(optimizer, TrainConfig(steps=10, schedule="cosin"))
