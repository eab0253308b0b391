"""`python -m bench doctor`: one screen saying what a run on this machine would use and what is missing.

Each section is a probe that returns lines; a probe that raises becomes one "check failed" line and the
other sections still print, so the command always exits 0 (useful on a login node or a half-set-up machine).
Nothing is downloaded and nothing is written.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
import threading
from typing import Callable, Iterable

# (distribution name, import name, what LossBench uses it for)
REQUIRED_PACKAGES = (
    ("torchvision", "torchvision", "VGG/AlexNet/SqueezeNet backbones"),
    ("pytorch-msssim", "pytorch_msssim", "SSIM/MS-SSIM metrics"),
    ("lpips", "lpips", "LPIPS loss and metric"),
    ("numpy", "numpy", ""),
    ("pandas", "pandas", "tables"),
    ("matplotlib", "matplotlib", "report plots"),
    ("seaborn", "seaborn", "report plots"),
    ("scikit-image", "skimage", "bundled photos"),
    ("tqdm", "tqdm", "progress bars"),
    ("pooch", "pooch", "named datasets"),
)
OPTIONAL_PACKAGES = (
    ("ray", "ray", "--workers / --ray-address"),
    ("tensorboard", "tensorboard", "--log-to tensorboard, bench export"),
    ("mlflow", "mlflow", "--log-to mlflow, bench export"),
    ("piq", "piq", "reference SSIM/MS-SSIM timing"),
    ("kornia", "kornia", "reference SSIM timing"),
    ("torchmetrics", "torchmetrics", "reference SSIM/MS-SSIM timing"),
    ("focal-frequency-loss", "focal_frequency_loss", "reference focal frequency timing, tests"),
    ("fussim", "fussim", "reference fused CUDA SSIM timing (GPU only)"),
    ("fused-ssim", "fused_ssim", "reference fused CUDA SSIM timing (GPU only)"),
    ("triton", "triton", "torch.compile on a GPU"),
    ("pytest", "pytest", "tests"),
    ("pytest-benchmark", "pytest_benchmark", "tests/benchmarks"),
    ("hypothesis", "hypothesis", "tests"),
)
# torchvision architectures whose ImageNet weights the pretrained losses and the LPIPS metric can load
WEIGHT_USERS = (
    ("vgg19", "perceptual, style (default net)"),
    ("vgg16", 'perceptual/style net = "vgg16", lpips net = "vgg"'),
    ("alexnet", "lpips loss and metric (default net)"),
    ("squeezenet1_1", 'lpips net = "squeeze"'),
)
NETWORK_HOST = "download.pytorch.org"

Probe = Callable[[], Iterable[str]]


def report(network_check: bool = True) -> list[str]:
    """Every section's lines; a probe that raises is reported as a line, never raised."""
    sections: list[tuple[str, Probe]] = [
        ("devices", devices),
        ("software", software),
        ("pretrained weights", lambda: weights(network_check)),
        ("packages", packages),
        ("data sources", data_sources),
        ("named datasets", named_datasets),
    ]
    lines = ["LossBench doctor: what a run on this machine would use"]
    for title, probe in sections:
        lines.append("")
        lines.append(f"{title}:")
        try:
            lines += [f"  {line}" for line in probe()]
        except Exception as error:  # a broken driver, a corrupt install: say so and carry on
            lines.append(f"  check failed: {type(error).__name__}: {error}")
    return lines


def devices() -> list[str]:
    import torch

    from bench.results import device_name

    lines = [
        f"cpu: {device_name(torch.device('cpu'))}, {os.cpu_count()} logical cores, "
        f"torch uses {torch.get_num_threads()} threads{_memory_total()}"
    ]
    if not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        lines.append(f"cuda: not available (torch is {built}; no usable GPU or driver found)")
        lines.append('device = "auto" would use: cpu ([profile.cpu] of a suite applies)')
        return lines
    count = torch.cuda.device_count()
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        lines.append(
            f"cuda:{index}: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
            f"compute capability {props.major}.{props.minor}, "
            f"bf16 {'yes' if _bf16_supported(index) else 'no'}"
        )
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        lines.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
    lines.append(
        f'device = "auto" would use: cuda:0 ({torch.cuda.get_device_name(0)}); '
        f"{count} GPU{'s' if count != 1 else ''} visible for --workers/--gpus"
    )
    return lines


def software() -> list[str]:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    lines = [
        f"python {sys.version.split()[0]} ({platform.platform()})",
        f"torch {torch.__version__}, torchvision {_version('torchvision')}",
        f"CUDA (torch build) {torch.version.cuda or 'none'}, cuDNN {_cudnn_version(cudnn) if cudnn else 'none'}",
    ]
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("cc")
    lines.append(f"torch.compile on cpu: C++ compiler {compiler or 'NOT FOUND (compile variant fails on cpu)'}")
    return lines


def weights(network_check: bool = True) -> list[str]:
    from bench.losses.pretrained import imagenet_weights_file

    import torch

    lines = [
        f"torch hub cache: {os.path.join(torch.hub.get_dir(), 'checkpoints')} "
        f"(TORCH_HOME={os.environ.get('TORCH_HOME', 'unset')})"
    ]
    missing = []
    for arch, users in WEIGHT_USERS:
        path, url = imagenet_weights_file(arch)
        if path.is_file():
            lines.append(f"{arch}: cached ({path.stat().st_size / 2**20:.0f} MB, {path.name}) - {users}")
        else:
            missing.append(arch)
            lines.append(f"{arch}: not cached - {users}")
    if missing:
        online = _reachable(NETWORK_HOST) if network_check else None
        state = {
            True: f'{NETWORK_HOST} is reachable, so weights="auto" would download them on first use',
            False: f'{NETWORK_HOST} is not reachable, so weights="auto" falls back to seeded random '
            'networks (with a warning) and weights="imagenet" fails',
            None: 'weights="auto" downloads them when online, else falls back to seeded random networks',
        }
        lines.append(f"not cached: {', '.join(missing)}: {state[online]}")
    lines.append(f"lpips linear heads (inside the lpips package): {_lpips_heads()}")
    return lines


def packages() -> list[str]:
    lines = ["required: " + ", ".join(f"{dist} {_version(dist, module)}" for dist, module, _ in REQUIRED_PACKAGES)]
    width = max(len(dist) for dist, _, _ in OPTIONAL_PACKAGES)
    for dist, module, purpose in OPTIONAL_PACKAGES:
        lines.append(f"{dist:<{width}}  {_version(dist, module):<16}  {purpose}")
    return lines


def data_sources() -> list[str]:
    from bench.data import images as data

    names = list(data.BUNDLED_PHOTOS) + list(getattr(data, "OTHER_PHOTOS", ()))
    load = getattr(data, "bundled_photo", None)
    if load is None:

        def load(name: str):
            from skimage import data as skdata

            return getattr(skdata, name)()

    usable, broken = [], []
    for name in names:
        try:
            load(name)
            usable.append(name)
        except Exception as error:  # a file that would have to be downloaded, scikit-image missing or broken
            broken.append(f"{name} ({type(error).__name__})")
    then = ", then procedural images (any number)" if hasattr(data, "procedural_image") else ""
    line = f'source = "bundled": {len(usable)} of {len(names)} photographs available offline{then}'
    return [line] + ([f"  unavailable: {', '.join(broken)}"] if broken else []) + [_folder_line()]


def named_datasets() -> list[str]:
    """Each named dataset and whether the cache holds it (files present with their pinned hashes); only reads."""
    from bench.data.datasets import DATASETS, ENV_CACHE, cached_files, cache_root

    if importlib.util.find_spec("pooch") is None:  # a machine set up from wheels without it (.ci/gpu)
        return [f"pooch not installed (pip install pooch): {', '.join(DATASETS)} cannot be fetched or read"]
    lines = [
        f"named datasets cache: {cache_root()} (${ENV_CACHE}={os.environ.get(ENV_CACHE, 'unset')}; "
        "a suite's data.cache applies when the variable is unset)"
    ]
    for name, dataset in DATASETS.items():
        good, total = cached_files(name)
        state = (
            f"cached ({total} file{'s' if total != 1 else ''}, hashes checked)"
            if good == total
            else f"not cached ({good} of {total} files): `python -m bench fetch {name}` downloads {dataset.download}"
        )
        lines.append(f'source = "{name}": {state} - {dataset.title}')
    return lines


def _folder_line() -> str:
    pil = _version("pillow", "PIL")
    return f'source = "folder": png/jpg files under data.path (Pillow {pil})'


def _version(dist: str, module: str | None = None) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    module = module or dist.replace("-", "_")
    try:  # importable without metadata (a source checkout on PYTHONPATH)
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return "installed (version unknown)" if found else "not installed"


def _cudnn_version(number: int) -> str:
    # cuDNN 9 encodes major * 10000 + minor * 100 + patch, earlier versions major * 1000 + minor * 100 + patch.
    major, rest = divmod(number, 10000) if number >= 90000 else divmod(number, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return f", {int(line.split()[1]) / 2**20:.1f} GiB RAM"
    except OSError:
        pass
    return ""


def _bf16_supported(index: int) -> bool:
    import torch

    return torch.cuda.get_device_capability(index) >= (8, 0)


def _lpips_heads() -> str:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return "lpips not installed"
    folder = os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1")
    found = sorted(name for name in os.listdir(folder) if name.endswith(".pth")) if os.path.isdir(folder) else []
    return ", ".join(found) if found else f"MISSING under {folder}"


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` (DNS included, in a daemon thread so a
    resolver that hangs cannot hang the doctor)."""
    import socket

    result = [False]

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0]
