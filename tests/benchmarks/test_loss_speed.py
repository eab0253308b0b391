"""pytest-benchmark timings of every registered loss's forward + backward.

Small by default (batch 1 at 128 x 128, one thread) so a plain ``pytest`` run stays quick while still
running each loss; ``LOSSBENCH_BENCH_RES=512`` raises the resolution and ``LOSSBENCH_BENCH_THREADS=0``
leaves torch's thread count alone. Time only these with
``pytest tests/benchmarks --benchmark-only``; keep and compare runs with ``--benchmark-autosave`` and
``--benchmark-compare``. The suite-level timings with calibration and variants are ``bench.speed.timing``'s.
"""

import os

import pytest
import torch

from bench.losses import LossContext, build_loss, get_loss_info, loss_names
from bench.losses.precision import native_bf16
from bench.speed.timing import scalar_loss

RESOLUTION = int(os.environ.get("LOSSBENCH_BENCH_RES", "128"))
THREADS = int(os.environ.get("LOSSBENCH_BENCH_THREADS", "1"))
BATCH = 1


@pytest.fixture(scope="module", autouse=True)
def threads():
    # One thread by default: on a small VM shared with other jobs, each intra-op parallel region can wait a
    # scheduler tick for its second thread (ssim took 0.8 s with 2 threads against 3 ms with 1 on a loaded
    # 2-vCPU machine), which makes multi-threaded numbers noise and the test run slow.
    saved = torch.get_num_threads()
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(saved)


def params_for(name: str) -> dict:
    """What a loss needs to build at RESOLUTION, offline."""
    defaults = get_loss_info(name).defaults
    params = {}
    if "weights" in defaults:
        params["weights"] = "random"  # no download, and the time does not depend on the weight values
    if {"levels", "win_size"} <= set(defaults) and RESOLUTION <= (defaults["win_size"] - 1) * 2 ** (
        defaults["levels"] - 1
    ):
        params["levels"] = "auto"  # the default MS-SSIM scales do not fit: take as many as do
    return params


def time_forward_backward(benchmark, loss, group: str, **extra) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, 3, RESOLUTION, RESOLUTION)

    def fresh_inputs():  # a new leaf per round, so no round accumulates into another's gradient
        return (torch.rand(shape, generator=generator).requires_grad_(), torch.rand(shape, generator=generator)), {}

    def forward_backward(reconstruction, target):
        scalar_loss(loss(reconstruction, target)).backward()

    benchmark.group = group
    benchmark.extra_info.update(batch_size=BATCH, resolution=RESOLUTION, threads=torch.get_num_threads(), **extra)
    benchmark.pedantic(forward_backward, setup=fresh_inputs, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.filterwarnings("ignore:MS-SSIM:UserWarning")  # levels="auto" below 161 px warns by design
@pytest.mark.parametrize("name", loss_names())
def test_loss_forward_backward(benchmark, name):
    loss = build_loss(name, params_for(name), LossContext(image_size=RESOLUTION))
    group = f"loss fwd+bwd, {BATCH} x 3 x {RESOLUTION} x {RESOLUTION}"
    time_forward_backward(benchmark, loss, group, params=params_for(name))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["perceptual", "style", "lpips"])
def test_loss_network_precision(benchmark, name, precision):
    """The frozen loss networks in float32 and in bfloat16 (train.loss_networks), side by side per loss."""
    if precision == "bf16" and not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 instructions: train.loss_networks = 'auto' keeps fp32 here")
    loss = build_loss(name, params_for(name), LossContext(image_size=RESOLUTION, precision=precision))
    group = f"{name} fwd+bwd by loss-network precision, {BATCH} x 3 x {RESOLUTION} x {RESOLUTION}"
    time_forward_backward(benchmark, loss, group, precision=precision)
