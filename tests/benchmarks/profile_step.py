"""Where a training step's time goes, per entry: crop assembly, model forward, loss forward, backward, Adam and
the weight average, each timed around the same calls bench.train.loop makes (synchronised on a GPU).

    python tests/benchmarks/profile_step.py suites/all_losses.toml --only mse,perceptual --threads 1
    python tests/benchmarks/profile_step.py suites/all_losses.toml --device cuda --trace trace.json

With ``--trace``, the same steps also run under torch.profiler and its Chrome trace is written there.
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import nullcontext

import torch

from bench.config.plan import make_plan
from bench.config.suite import load_suite, profile_name, suite_for_device
from bench.data.images import PhotoPixels, crop_schedule, make_batch
from bench.train.average import WeightAverage
from bench.train.jobs import Trainer
from bench.train.runner import resolve_device

PHASES = ("crops", "model", "loss", "backward", "adam", "average")


def profile_entry(trainer: Trainer, spec, steps: int, warm: int = 5) -> dict[str, float]:
    """Milliseconds per step of each phase, over ``steps`` steps after ``warm`` untimed ones."""
    device = trainer.device
    images = trainer.images(spec)
    loss_fn = trainer.loss(spec)
    model = copy.deepcopy(trainer.initial_model(spec)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.train.lr, fused=True)
    average = WeightAverage(model, spec.train.ema or 0.99)
    photos = PhotoPixels.pack(images.train, spec.data.resolution, device)
    schedule = crop_schedule(
        [tuple(photo.shape[-2:]) for photo in images.train],
        spec.data.resolution,
        spec.train.batch_size,
        warm + steps,
        spec.seed,
        spec.data.flip,
        spec.data.rotate,
    )
    totals = dict.fromkeys(PHASES, 0.0)

    def mark() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    for step, crops in enumerate(schedule):
        times = [mark()]
        target = make_batch(photos, crops).contiguous()
        times.append(mark())
        reconstruction = model(target)
        times.append(mark())
        loss, _ = loss_fn(reconstruction, target)
        times.append(mark())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        times.append(mark())
        optimizer.step()
        times.append(mark())
        average.update()
        times.append(mark())
        if step >= warm:
            for phase, start, end in zip(PHASES, times, times[1:]):
                totals[phase] += end - start
    return {phase: 1000 * seconds / steps for phase, seconds in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--only", help="comma-separated entry names (default: every entry)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--trace", help="also write a torch.profiler Chrome trace of the timed steps here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    suite = load_suite(args.suite)
    profile = profile_name(suite, device.type)
    suite = suite_for_device(suite, device.type)
    wanted = set(args.only.split(",")) if args.only else None
    plan = [
        spec
        for spec in make_plan(suite, profile)
        if spec.seed == suite.seeds[0] and (wanted is None or spec.entry.name in wanted)
    ]
    trainer = Trainer(suite, str(device), show_progress=False)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []
    )
    tracing = torch.profiler.profile(activities=activities) if args.trace else nullcontext()
    print(
        f"{suite.name} [profile.{profile}] on {device}, {torch.get_num_threads()} thread(s): "
        f"{plan[0].data.resolution} px crops, batch {plan[0].train.batch_size}; ms per step"
    )
    print(f"{'entry':18s} {'total':>8s} " + " ".join(f"{phase:>9s}" for phase in PHASES))
    with tracing:
        for spec in plan:
            phases = profile_entry(trainer, spec, args.steps)
            print(
                f"{spec.entry.name:18s} {sum(phases.values()):8.2f} "
                + " ".join(f"{phases[phase]:9.2f}" for phase in PHASES),
                flush=True,
            )
    if args.trace:
        tracing.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
