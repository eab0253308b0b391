"""The timing engine: forward, backward and total (fwd+bwd) time of a loss, as plain records.

``time_loss`` times one loss callable, ``time_calibration`` the fixed reference workload alone, and
``time_entries`` several named losses, one record per entry x variant x phase (columns: ``COLUMNS``).

How it measures (the choices follow ``triton.testing.do_bench`` and ``torch.utils.benchmark``):

* Inputs are a random reconstruction (``requires_grad``) and target, N x 3 x R x R in [0, 1], made once
  from ``seed``. The reconstruction's gradient is dropped between repeats, outside the timed region.
* Warm-up steps run first and are not recorded. Then steps repeat until both ``min_repeats`` and
  ``min_time_s`` are reached, or ``max_repeats``. Statistics are median, IQR and min: a median resists the
  occasional slow outlier (a page fault, another process) that drags a mean. ``samples_ms`` keeps every
  repeat (space-separated), so ``bench check`` can test two tables with ``bench.speed.stats``.
* CUDA: ``torch.cuda.Event`` pairs around forward and backward, synchronised only after a step, so the
  timed region is GPU time with no host round-trip in it. The L2 cache is flushed before each step by
  zeroing a 256 MB buffer, so a loss cannot look fast by finding its inputs still cached. cuDNN autotuning
  is on (its picks settle during warm-up); ``fp32`` turns TF32 off and ``tf32`` on. Every backend flag is
  restored afterwards.
* CPU: ``time.perf_counter`` around forward and backward (CPU ops are synchronous). Caches are not
  flushed: a buffer as large as a server's L3 would cost more than the small losses it separates.
  ``threads`` records ``torch.get_num_threads()``; on a small machine shared with other work, one thread
  gives far steadier numbers than several (see ``tests/test_speedcheck.py``).
* Peak memory is measured on one extra step before the warm-up, so it never perturbs the timings, and it
  is the peak over a whole fwd+bwd step (repeated on each phase row). ``memory_method`` says how:
  ``cuda_max_allocated``: ``torch.cuda.max_memory_allocated`` above what was allocated before the step;
  ``cpu_rss_hwm_delta``: the process's resident-set high-water mark (reset through
  ``/proc/self/clear_refs``) above the resident set before the step, after returning free heap to the OS.
  It counts pages the step newly touched, so memory the allocator reuses without touching new pages is
  missed: a lower bound, good for comparing losses, not an allocator-exact figure.
  ``unavailable`` (NaN) where neither applies.
* Calibration (``calibrate=True``, always on in ``time_entries``): a step of ``CalibrationLoss`` (fp32,
  eager) runs before each step of the loss; ``calibration_ms`` and ``calibration_min_ms`` are its
  total-phase median and min. Interleaved step by step, both see the same machine: on a shared machine,
  load comes and goes in bursts that a calibration timed before or after the loss would miss.
  ``min_ms / calibration_min_ms`` is a rough machine-independent speed, kept in the baseline record
  (``bench.speed.check.save_baseline``); it is not what the regression gate compares (``bench.speed.gate``).

Variants (``VARIANTS``): ``fp32``; ``tf32`` (TF32 matmul and cuDNN on CUDA; on CPU identical to fp32 but
labelled so); ``bf16`` (``torch.autocast`` to bfloat16 around the forward); ``channels_last`` (inputs and a
copy of the loss module in channels-last memory format); ``compile`` (``torch.compile``: the first call,
which compiles the forward and backward graphs, is timed on its own as ``compile_s``, 0 for the other
variants, and precedes the warm-up).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import math
import statistics
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.results import device_name

VARIANTS = ("fp32", "tf32", "bf16", "channels_last", "compile")
PHASES = ("forward", "backward", "total")
COLUMNS = (
    "entry",
    "variant",
    "phase",
    "median_ms",
    "iqr_ms",
    "min_ms",
    "images_per_s",
    "repeats",
    "batch_size",
    "resolution",
    "device",
    "device_name",
    "peak_mem_mb",
    "memory_method",
    "threads",
    "cudnn_benchmark",
    "tf32",
    "compile_s",
    "calibration_ms",
    "calibration_min_ms",
    "torch_version",
    "samples_ms",
)
CALIBRATION_ENTRY = "__calibration__"  # the entry of time_calibration's records
_L2_FLUSH_BYTES = 256 * 2**20

LossFn = Callable[[torch.Tensor, torch.Tensor], Any]
Step = Callable[[], tuple[float, float, float]]  # one fwd+bwd: forward, backward and total ms


def scalar_loss(output: Any) -> torch.Tensor:
    """The loss tensor of a loss's output: ``WeightedSum`` returns ``(total, terms)``, others a tensor."""
    return output[0] if isinstance(output, tuple) else output


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown timing variant {variant!r}; valid variants: {', '.join(VARIANTS)}")


def time_loss(
    loss: LossFn,
    *,
    batch_size: int,
    resolution: int,
    device: str | torch.device = "cpu",
    variant: str = "fp32",
    warmup: int = 2,
    min_repeats: int = 10,
    min_time_s: float = 0.5,
    max_repeats: int = 1000,
    seed: int = 0,
    calibrate: bool = False,
) -> list[dict[str, Any]]:
    """One record per phase (forward, backward, total) of ``loss`` on random images; no ``entry`` key.

    ``calibration_ms`` and ``calibration_min_ms`` are NaN unless ``calibrate`` interleaves the calibration
    workload (module docstring).
    """
    check_variant(variant)
    if warmup < 0 or min_repeats < 2 or max_repeats < min_repeats or min_time_s < 0:
        raise ValueError(
            f"need warmup >= 0, 2 <= min_repeats <= max_repeats and min_time_s >= 0 (an IQR needs two "
            f"samples), got warmup={warmup}, min_repeats={min_repeats}, max_repeats={max_repeats}, "
            f"min_time_s={min_time_s}"
        )
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    if variant == "channels_last" and isinstance(loss, nn.Module):
        # A copy: converting the caller's module in place would leak into the variants timed after.
        loss = copy.deepcopy(loss).to(memory_format=torch.channels_last)
    if variant == "compile":
        # A fresh compile per loss: compile_s is then comparable between losses, and losses sharing one
        # forward (every WeightedSum) cannot exhaust dynamo's recompile limit and silently run eagerly.
        torch._dynamo.reset()
        loss = torch.compile(loss)

    size = dict(batch_size=batch_size, resolution=resolution, device=device, seed=seed)
    with _cuda_backend() if on_cuda else contextlib.nullcontext():
        flush = torch.empty(_L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device) if on_cuda else None
        step = _make_step(loss, variant, _inputs(**size, channels_last=variant == "channels_last"), flush)
        steps = [step]
        if calibrate:
            steps.insert(0, _make_step(CalibrationLoss().to(device), "fp32", _inputs(**size), flush))
        compile_s = 0.0
        if variant == "compile":
            start = time.perf_counter()
            step()
            compile_s = time.perf_counter() - start  # the step synchronised: the compiled code has run
        # Before the warm-up: measuring CPU memory hands free heap back to the OS, and the warm-up then
        # brings the allocator back to its steady state.
        peak_mem_mb, memory_method = _peak_memory_mb(step, device)
        for _ in range(warmup):
            for each in steps:
                each()
        samples: list[list[tuple[float, float, float]]] = [[] for _ in steps]
        start = time.perf_counter()
        while len(samples[0]) < max_repeats and (
            len(samples[0]) < min_repeats or time.perf_counter() - start < min_time_s
        ):
            for each, taken in zip(steps, samples):
                taken.append(each())

    calibration = _stats([s[2] for s in samples[0]], batch_size) if calibrate else {}
    calibration.pop("samples_ms", None)
    common = dict(
        batch_size=batch_size,
        resolution=resolution,
        device=str(device),
        device_name=device_name(device),
        peak_mem_mb=peak_mem_mb,
        memory_method=memory_method,
        threads=torch.get_num_threads(),
        cudnn_benchmark=on_cuda,
        tf32=on_cuda and variant == "tf32",
        compile_s=compile_s,
        calibration_ms=calibration.get("median_ms", math.nan),
        calibration_min_ms=calibration.get("min_ms", math.nan),
        torch_version=torch.__version__,
    )
    return [
        {"variant": variant, "phase": phase, **_stats([s[i] for s in samples[-1]], batch_size), **common}
        for i, phase in enumerate(PHASES)
    ]


def time_calibration(
    device: str | torch.device = "cpu", *, batch_size: int, resolution: int, **timing: Any
) -> list[dict[str, Any]]:
    """Records (entry ``CALIBRATION_ENTRY``, fp32) of the calibration workload timed alone.

    ``timing`` takes ``time_loss``'s other keyword arguments.
    """
    records = time_loss(
        CalibrationLoss().to(device), batch_size=batch_size, resolution=resolution, device=device, **timing
    )
    return [{"entry": CALIBRATION_ENTRY, **record} for record in records]


def time_entries(
    entries: Sequence[tuple[str, LossFn]],
    *,
    batch_size: int,
    resolution: int,
    device: str | torch.device = "cpu",
    variants: Sequence[str] = ("fp32",),
    log: Callable[[str], None] | None = None,
    **timing: Any,
) -> list[dict[str, Any]]:
    """Records (``COLUMNS``) of every entry x variant x phase, calibrated (module docstring).

    Each row's calibration columns were measured interleaved with that row's loss, so there is no separate
    calibration row. ``timing`` takes ``time_loss``'s other keyword arguments; ``log`` gets one line per
    entry and variant.
    """
    for variant in variants:
        check_variant(variant)
    rows = []
    for name, loss in entries:
        for variant in variants:
            records = time_loss(
                loss,
                batch_size=batch_size,
                resolution=resolution,
                device=device,
                variant=variant,
                calibrate=True,
                **timing,
            )
            total = records[PHASES.index("total")]
            if log is not None:
                log(
                    f"{name} [{variant}]: {total['median_ms']:.3f} ms fwd+bwd, "
                    f"{total['min_ms'] / total['calibration_min_ms']:.3f} x calibration"
                )
            rows += [{"entry": name, **record} for record in records]
    return [{column: row[column] for column in COLUMNS} for row in rows]


class CalibrationLoss(nn.Module):
    """The reference workload: a loss-shaped op whose cost scales with the machine as the losses' do.

    Both images go through a dense 3x3 convolution to 4 channels (like the VGG/AlexNet features of
    perceptual losses) and a 7x7 depthwise Gaussian blur (bandwidth-bound, like SSIM's windowed
    statistics); a squared error (elementwise, like the pixel losses) compares them. A matmul alone would
    track only compute and a pixel loss only bandwidth; machines differ in the ratio of the two, so a mix
    keeps ``loss / calibration`` steadier across machines than either extreme. It runs at the entries'
    batch size and resolution, so it shares their regime (cache-resident or not on CPU, launch-bound or
    not on GPU). Small channel counts keep it cheap: a few ms per step at 1 x 128 x 128 on one CPU core,
    well under a second at 4 x 512 x 512. The weights are fixed buffers (seed 0), so the workload is the
    same everywhere.
    """

    def __init__(self, channels: int = 4, window: int = 7, sigma: float = 1.5) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("conv", torch.randn(channels, 3, 3, 3, generator=generator) / 9)
        taps = torch.exp(-((torch.arange(window) - window // 2) ** 2) / (2 * sigma**2))
        kernel = torch.outer(taps, taps) / taps.sum() ** 2
        self.register_buffer("blur", kernel.expand(channels, 1, window, window).contiguous())

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._features(reconstruction), self._features(target))

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        features = F.conv2d(images, self.conv, padding=1).relu()
        return F.conv2d(features, self.blur, padding=self.blur.shape[-1] // 2, groups=self.blur.shape[0])


def _inputs(*, batch_size: int, resolution: int, device: torch.device, seed: int, channels_last: bool = False):
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (batch_size, 3, resolution, resolution)
    images = [torch.rand(shape, generator=generator, device=device) for _ in range(2)]
    if channels_last:
        images = [image.contiguous(memory_format=torch.channels_last) for image in images]
    reconstruction, target = images
    return reconstruction.requires_grad_(True), target


def _make_step(loss: LossFn, variant: str, inputs, flush: torch.Tensor | None) -> Step:
    reconstruction, target = inputs
    autocast = torch.autocast(reconstruction.device.type, dtype=torch.bfloat16, enabled=variant == "bf16")

    def forward() -> torch.Tensor:
        reconstruction.grad = None
        with autocast:
            return scalar_loss(loss(reconstruction, target))

    if flush is None:

        def cpu_step() -> tuple[float, float, float]:
            start = time.perf_counter()
            value = forward()
            forward_end = time.perf_counter()
            value.backward()
            end = time.perf_counter()
            return 1e3 * (forward_end - start), 1e3 * (end - forward_end), 1e3 * (end - start)

        return cpu_step

    tf32 = variant == "tf32"
    start, forward_end, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))

    def cuda_step() -> tuple[float, float, float]:
        _set_tf32(tf32)  # per step: an interleaved calibration step runs in fp32 between tf32 steps
        flush.zero_()
        start.record()
        value = forward()
        forward_end.record()
        value.backward()
        end.record()
        torch.cuda.synchronize(flush.device)
        return start.elapsed_time(forward_end), forward_end.elapsed_time(end), start.elapsed_time(end)

    return cuda_step


@contextlib.contextmanager
def _cuda_backend():
    """cuDNN autotuning on for the block; it and the TF32 switches ``_set_tf32`` flips restored after."""
    flags = [(torch.backends.cudnn, "benchmark"), *_tf32_flags()[0]]
    saved = [getattr(owner, name) for owner, name in flags]
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        for (owner, name), value in zip(flags, saved):
            setattr(owner, name, value)


def _tf32_flags() -> tuple[list[tuple[Any, str]], tuple[Any, Any]]:
    """The switches for TF32 in matmuls and convolutions, and their (on, off) values."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9, where reading allow_tf32 after this API raises
        return [(matmul, "fp32_precision"), (torch.backends.cudnn.conv, "fp32_precision")], ("tf32", "ieee")
    return [(matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")], (True, False)


def _set_tf32(enabled: bool) -> None:
    flags, (on, off) = _tf32_flags()
    for owner, name in flags:
        setattr(owner, name, on if enabled else off)


def _peak_memory_mb(step: Step, device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda_max_allocated"
    if device.type != "cpu":
        return math.nan, "unavailable"
    try:
        _return_free_heap()
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")  # resets the resident-set high-water mark (Linux >= 4.0)
        before = _proc_status_mb("VmRSS")
    except OSError:
        return math.nan, "unavailable"
    step()
    return max(_proc_status_mb("VmHWM") - before, 0.0), "cpu_rss_hwm_delta"


def _return_free_heap() -> None:
    # Without this, freed heap pages stay resident and a step that reuses them shows as using nothing.
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc only
        libc.malloc_trim(0)


def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    raise OSError(f"/proc/self/status has no {key}")


def _stats(samples_ms: list[float], batch_size: int) -> dict[str, Any]:
    q25, median, q75 = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return dict(
        median_ms=median,
        iqr_ms=q75 - q25,
        min_ms=min(samples_ms),
        images_per_s=batch_size / (median / 1e3) if median > 0 else math.inf,
        repeats=len(samples_ms),
        samples_ms=" ".join(f"{sample:.6g}" for sample in samples_ms),
    )
