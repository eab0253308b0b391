"""Every registered loss: gradients, frozen networks, sizes, and agreement with reference implementations.

Parametrised over ``loss_names()``, so a newly registered loss is covered; give it test parameters in
``TEST_PARAMS`` if its defaults do not suit 64 px images, and its value on identical images in ``FLOOR``
if that is not 0.
"""

from __future__ import annotations

import functools
import math

import lpips
import numpy as np
import pytest
import pytorch_msssim
import scipy.signal
import torch
import torch.nn.functional as F
from focal_frequency_loss import FocalFrequencyLoss
from skimage.metrics import structural_similarity
from torch import nn

from bench.losses import LossContext, build_loss, loss_names
from bench.losses.frequency import focal_frequency_loss
from bench.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD
from bench.losses.structural import (
    MS_SSIM_WEIGHTS,
    ms_ssim_index,
    ms_ssim_l1_loss,
    ms_ssim_loss,
    resolve_levels,
    ssim_loss,
)
from bench.losses.registry import get_loss_info

SIZE = 64
NAMES = loss_names()
RANDOM_NETWORK = {"weights": "random"}  # no downloads in tests; ImageNet loading is tested in test_pretrained.py
TEST_PARAMS = {
    "ms_ssim": {"levels": 3},  # 5 levels need > 160 px
    "ms_ssim_l1": {"levels": 3},
    "perceptual": RANDOM_NETWORK,
    "style": RANDOM_NETWORK,
    "lpips": RANDOM_NETWORK,
    "dists": RANDOM_NETWORK,
    "nlpd": {"levels": 5},  # 6 levels need 65 px
}
LARGE_PARAMS = {"perceptual": RANDOM_NETWORK, "lpips": RANDOM_NETWORK, "dists": RANDOM_NETWORK}  # 512 px
LEARNS_ITS_PARAMETERS = {"robust_adaptive"}  # its shape and scale train with the model (tests/test_metric_selection.py)
SLOW_AT_512 = {"style"}  # ~7 s on 2 CPU cores; its VGG path is covered by perceptual at 512 px


def _binary_entropy(target: torch.Tensor) -> float:
    p = target.double().clamp(1e-12, 1 - 1e-12)
    return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean())


# The value on identical images, where it is not 0.
def _adaptive_floor(target: torch.Tensor) -> float:
    from bench.losses.robust import log_partition

    return math.log(0.03) + log_partition(torch.tensor(1.0, dtype=torch.float64)).item()


FLOOR = {"bce": _binary_entropy, "charbonnier": lambda target: 1e-3, "robust_adaptive": _adaptive_floor}


@functools.lru_cache(maxsize=None)
def loss_module(name: str, size: int = SIZE) -> nn.Module:
    params = TEST_PARAMS.get(name, {}) if size == SIZE else LARGE_PARAMS.get(name, {})
    return build_loss(name, params, LossContext(image_size=size, seed=0))


def images(n: int = 2, channels: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Smooth shapes plus fine texture in [0, 1], like natural images rather than white noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(
        torch.rand(n, channels, 8, 8, generator=generator), size=(size, size), mode="bilinear", align_corners=False
    )
    texture = 0.1 * torch.randn(n, channels, size, size, generator=generator)
    return (coarse + texture).clamp(0, 1)


def noisy(target: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (target + sigma * torch.randn(target.shape, generator=generator)).clamp(0, 1)


def floor(name: str, target: torch.Tensor) -> float:
    return FLOOR[name](target) if name in FLOOR else 0.0


# --- every loss -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_reconstruction_and_no_network(name):
    loss = loss_module(name)
    target = images()
    reconstruction = noisy(target, 0.1).requires_grad_()
    value = loss(reconstruction, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(reconstruction.grad).all()
    assert reconstruction.grad.abs().sum() > 0
    for parameter in loss.parameters():
        assert (
            (parameter.requires_grad and parameter.grad is not None)
            if name in LEARNS_ITS_PARAMETERS
            else (not parameter.requires_grad and parameter.grad is None)
        )
        parameter.grad = None


@pytest.mark.parametrize("name", NAMES)
def test_identical_images_give_the_floor_and_noise_raises_it(name):
    loss = loss_module(name)
    target = images()
    with torch.no_grad():
        same = loss(target, target).item()
        small, large = loss(noisy(target, 0.05), target).item(), loss(noisy(target, 0.2), target).item()
    assert same == pytest.approx(floor(name, target), abs=1e-5)
    assert same < small < large


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one(name):
    target = images(n=1)
    reconstruction = noisy(target, 0.1).requires_grad_()
    value = loss_module(name)(reconstruction, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(reconstruction.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_grayscale(name):
    target = images(channels=1)
    reconstruction = noisy(target, 0.1).requires_grad_()
    value = loss_module(name)(reconstruction, target)
    value.backward()
    assert torch.isfinite(value) and value > floor(name, target)
    assert torch.isfinite(reconstruction.grad).all() and reconstruction.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [name for name in NAMES if name not in SLOW_AT_512])
def test_full_size_512(name):
    target = images(n=1, size=512)
    reconstruction = noisy(target, 0.1).requires_grad_()
    value = loss_module(name, 512)(reconstruction, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(reconstruction.grad).all()


@pytest.mark.parametrize("name", [name for name in NAMES if name not in LEARNS_ITS_PARAMETERS])
def test_training_through_the_loss_leaves_its_network_unchanged(name):
    loss = loss_module(name)
    before = {key: tensor.clone() for key, tensor in loss.state_dict().items()}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Sigmoid())
    model_before = [p.clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = images()
    for _ in range(3):
        optimizer.zero_grad()
        loss(model(target), target).backward()
        optimizer.step()
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimised.isdisjoint(id(p) for p in loss.parameters())
    assert all(not p.requires_grad for p in loss.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(model_before, model.parameters()))
    for key, tensor in loss.state_dict().items():
        assert torch.equal(tensor, before[key]), key


# --- seed traps -------------------------------------------------------------------------------------


def test_ssim_family_is_differentiable():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 24, 24, generator=generator, dtype=torch.float64)
    reconstruction = target + 0.1 * torch.rand(target.shape, generator=generator, dtype=torch.float64)
    reconstruction.requires_grad_()
    for loss in (
        lambda r: ssim_loss(r, target, win_size=7),
        lambda r: ms_ssim_loss(r, target, levels=2, win_size=7),
        lambda r: ms_ssim_l1_loss(r, target, levels=2, win_size=7),
    ):
        assert torch.autograd.gradcheck(loss, (reconstruction,), fast_mode=True)


@pytest.mark.parametrize("name", ["ms_ssim", "ms_ssim_l1"])
def test_ms_ssim_gradient_is_finite_when_structure_is_anticorrelated(name):
    # 1 - x has negative contrast-structure at every scale; a fractional power of it is NaN unless clipped.
    target = images()
    for reconstruction in (1 - target, torch.rand(target.shape, generator=torch.Generator().manual_seed(2))):
        reconstruction = reconstruction.clone().requires_grad_()
        value = loss_module(name)(reconstruction, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(reconstruction.grad).all()


@pytest.mark.parametrize("name", ["ssim", "ms_ssim", "ms_ssim_l1"])
def test_ssim_family_runs_in_float32_under_autocast(name):
    loss = loss_module(name)
    target = images()
    reconstruction = noisy(target, 0.1)
    exact = loss(reconstruction, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = loss(reconstruction, target)
        from_bfloat16 = loss(reconstruction.bfloat16(), target.bfloat16())
    assert autocast.dtype == torch.float32 and from_bfloat16.dtype == torch.float32
    assert autocast.item() == pytest.approx(exact.item(), abs=1e-6)
    # bf16 inputs are only rounded, then upcast: the same as float32 on the rounded images.
    rounded = loss(reconstruction.bfloat16().float(), target.bfloat16().float())
    assert from_bfloat16.item() == pytest.approx(rounded.item(), abs=1e-6)


@pytest.mark.parametrize("name", ["ssim", "ms_ssim", "ms_ssim_l1"])
@pytest.mark.parametrize("level", [0.0, 0.123456, 0.5, 1.0])
def test_ssim_family_is_finite_and_at_most_one_on_constant_images(name, level):
    # pytorch-msssim does not clamp its variances (E[x^2] - E[x]^2) at 0; on flat images they round to
    # tiny negatives, which C2 = (0.03)^2 dwarfs: SSIM stays <= 1 and finite.
    target = torch.full((2, 3, SIZE, SIZE), level)
    reconstruction = target.clone().requires_grad_()
    value = loss_module(name)(reconstruction, target)
    value.backward()
    assert torch.isfinite(value) and value.item() >= -1e-6
    assert torch.isfinite(reconstruction.grad).all()
    other = loss_module(name)(torch.full_like(target, 1 - level), target)
    assert torch.isfinite(other) and 0 <= other.item() <= 1 + 1e-6


def test_perceptual_gradient_reaches_reconstruction():
    loss = loss_module("perceptual")
    target = images()
    reconstruction = noisy(target, 0.1).requires_grad_()
    loss(reconstruction, target).backward()
    assert reconstruction.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


@pytest.mark.parametrize("name", ["perceptual", "style"])
def test_vgg_input_is_imagenet_normalised(name):
    features = loss_module(name).features
    seen = []
    handle = features.features[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        mean_colour = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, SIZE, SIZE)
        features(mean_colour)
        features(torch.ones(1, 1, SIZE, SIZE))  # grayscale white
    finally:
        handle.remove()
    assert seen[0].abs().max() < 1e-6
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(seen[1][0, :, 0, 0], white)


def test_lpips_feeds_its_network_minus_one_to_one():
    metric = loss_module("lpips").metric
    seen = []
    handle = metric.scaling_layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        loss_module("lpips")(torch.zeros(1, 3, SIZE, SIZE), torch.ones(1, 3, SIZE, SIZE))
    finally:
        handle.remove()
    assert seen[0].min() == -1 and seen[1].max() == 1


def test_lpips_stays_deterministic_when_the_model_around_it_trains():
    loss = loss_module("lpips")
    target = images()
    reconstruction = noisy(target, 0.1)
    loss.train()
    try:
        assert not loss.metric.training
        assert loss(reconstruction, target).item() == loss(reconstruction, target).item()
    finally:
        loss.eval()


@pytest.mark.parametrize("autocast", [False, True])
def test_bce_is_finite_at_exactly_zero_and_one(autocast):
    target = images()
    reconstruction = (target > 0.5).float().requires_grad_()  # every pixel exactly 0 or 1, half of them wrong
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss_module("bce")(reconstruction, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(reconstruction.grad).all()


def test_ms_ssim_levels():
    with pytest.raises(ValueError, match=r"levels=3 or win_size=3 with levels=5 or levels='auto'"):
        build_loss("ms_ssim", {}, LossContext(image_size=64))
    with pytest.warns(UserWarning, match="using levels=4"):
        assert resolve_levels("auto", 128, 11) == (4, "levels=4 at 128px")
    assert resolve_levels("auto", 256, 11) == (5, "levels=5 at 256px")
    assert resolve_levels(5, 161, 11) == (5, "")
    with pytest.raises(ValueError, match="larger than 160 px, got 160 px"):
        resolve_levels(5, 160, 11)
    with pytest.raises(ValueError, match="integer from 1 to 5"):
        resolve_levels(6, 1024, 11)


@pytest.mark.parametrize("loss", ["perceptual", "style"])
@pytest.mark.parametrize("net, deepest", [("vgg16", "relu4_3"), ("vgg19", "relu4_4")])
def test_default_layers_exist_in_each_net(loss, net, deepest):
    module = build_loss(loss, {"net": net, "weights": "random"}, LossContext(SIZE))
    assert module.features.layers == ["relu1_2", "relu2_2", deepest.replace("4_", "3_"), deepest]
    assert module.layer_weights == [1.0] * 4


def test_style_gram_distance_is_johnsons_hand_computed():
    """Johnson et al. 2016, eq. 3-4: G = F F^T / (C H W), loss = ||G(x) - G(y)||_F^2. Here F(x) has channels
    [1, 0] and [0, 1] (C = 2, H = 1, W = 2) and F(y) = 0: G(x) = I / 4, so the loss is 2 / 16."""
    from bench.losses.perceptual import gram_distance

    x = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    assert gram_distance(x, torch.zeros_like(x)).item() == pytest.approx(0.125, abs=1e-7)


@pytest.mark.parametrize("channels", [64, 512])
def test_style_weights_layers_as_johnson_whatever_their_channels(channels):
    """Not a mean over the C x C Gram entries, which would weight relu4 (512 channels) 64 times less than relu1."""
    from bench.losses.perceptual import gram_distance

    generator = torch.Generator().manual_seed(channels)
    x, y = (torch.rand(2, channels, 4, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    gram = lambda f: np.einsum("nchw,ndhw->ncd", f, f) / (channels * 16)
    expected = np.mean(((gram(x.numpy()) - gram(y.numpy())) ** 2).sum(axis=(1, 2)))
    assert gram_distance(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_network_loss_parameters_are_checked():
    context = LossContext(SIZE)
    with pytest.raises(ValueError, match="vgg16 has no layer relu3_4, relu4_4; its relu layers are .*relu4_3"):
        build_loss("perceptual", {"net": "vgg16", "layers": ["relu3_4", "relu4_4"], "weights": "random"}, context)
    with pytest.raises(ValueError, match=r"one layer weight per layer \(4\), got 2"):
        build_loss("style", {"layer_weights": [1.0, 2.0], "weights": "random"}, context)
    with pytest.raises(ValueError, match="distance must be one of l1, l2, got 'cosine'"):
        build_loss("perceptual", {"distance": "cosine", "weights": "random"}, context)
    with pytest.raises(ValueError, match="needs images of at least 8 px .* got 4 px"):
        build_loss("perceptual", {"weights": "random"}, LossContext(4))
    with pytest.raises(ValueError, match="net='alex' needs images of at least 31 px, got 16 px; use net 'vgg'"):
        build_loss("lpips", {"weights": "random"}, LossContext(16))
    layers = ["relu1_2", "conv2_2", "relu3_3"]  # a conv output too: ReLUs must not overwrite it in place
    loss = build_loss(
        "perceptual",
        {"net": "vgg16", "layers": layers, "layer_weights": [1.0, 0.5, 2.0], "distance": "l2", "weights": "random"},
        context,
    )
    assert len(loss.features.features) == 16  # cut after relu3_3
    target = images()
    reconstruction = noisy(target, 0.1)
    conv2_2 = loss.features(reconstruction)[1]
    assert (conv2_2 < 0).any()
    recon_features, target_features = loss.features(reconstruction), loss.features(target)
    expected = sum(w * F.mse_loss(r, t) for w, r, t in zip([1.0, 0.5, 2.0], recon_features, target_features))
    torch.testing.assert_close(loss(reconstruction, target), expected)


def test_ms_ssim_auto_levels_records_the_choice():
    # Through the factory: resolve_params admits only ints where the default is one (see the report).
    info = get_loss_info("ms_ssim")
    with pytest.warns(UserWarning, match="fit 3 of 5 levels"):
        loss = info.factory(LossContext(image_size=64), **{**info.defaults, "levels": "auto"})
    assert loss.notes == "levels=3 at 64px" and loss.params["levels"] == 3


# --- reference implementations ---------------------------------------------------------------------


def _pair(size=SIZE, dtype=torch.float32, n=2, channels=3):
    target = images(n=n, channels=channels, size=size).to(dtype)
    return noisy(target, 0.2).to(dtype), target


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_pytorch_msssim_and_skimage(channels):
    reconstruction, target = _pair(dtype=torch.float64, channels=channels)
    ours = 1 - ssim_loss(reconstruction, target).item()
    library = pytorch_msssim.ssim(reconstruction, target, data_range=1.0).item()
    # skimage filters the whole image with reflection and then crops (win_size - 1) / 2 pixels per side,
    # which leaves exactly pytorch-msssim's valid region, with the same 11-tap Gaussian (truncate 3.5 *
    # sigma 1.5): they agree to float rounding (~3e-8, the Gaussian being built in float32).
    skimage = np.mean(
        [
            structural_similarity(
                r.numpy(),
                t.numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=0,
            )
            for r, t in zip(reconstruction, target)
        ]
    )
    assert ours == pytest.approx(library, abs=1e-12)
    assert ours == pytest.approx(skimage, abs=1e-6)


@pytest.mark.parametrize("levels", [5, 3])
def test_ms_ssim_matches_pytorch_msssim(levels):
    reconstruction, target = _pair(size=192)  # pytorch-msssim asserts > 160 px whatever the level count
    weights = np.array(MS_SSIM_WEIGHTS[:levels]) / sum(MS_SSIM_WEIGHTS[:levels])
    library = pytorch_msssim.ms_ssim(
        reconstruction, target, data_range=1.0, weights=weights.tolist(), size_average=False
    )
    ours = ms_ssim_index(reconstruction, target, levels=levels, size_average=False)
    torch.testing.assert_close(ours, library, rtol=0, atol=1e-6)
    loss = ms_ssim_loss(reconstruction, target, levels=levels).item()
    assert loss == pytest.approx(1 - library.mean().item(), abs=1e-6)


# Wang, Simoncelli and Bovik, "Multi-scale structural similarity for image quality assessment" (2003),
# section 3.1: the exponents beta_j = gamma_j = alpha_M of scales 1..5, as printed in the paper.
PAPER_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def skimage_ms_ssim(x: np.ndarray, y: np.ndarray, levels: int) -> float:
    """MS-SSIM of two C x H x W images from scikit-image's SSIM alone, per channel then averaged. The
    contrast-structure term of a scale is SSIM with a luminance constant so large (K1 = 1e6) that the
    luminance term is 1 to ~1e-12; scales are 2x2 means, as the authors' MATLAB code filters and subsamples."""
    weights = np.array(PAPER_MS_SSIM_WEIGHTS[:levels]) / sum(PAPER_MS_SSIM_WEIGHTS[:levels])
    window = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    values = []
    for a, b in zip(x, y):
        factors = []
        for level in range(levels):
            if level < levels - 1:
                factors.append(max(structural_similarity(a, b, K1=1e6, **window), 0.0))
                a, b = (p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3)) for p in (a, b))
            else:
                factors.append(max(structural_similarity(a, b, **window), 0.0))
        values.append(np.prod(np.array(factors) ** weights))
    return float(np.mean(values))


def test_ms_ssim_weights_are_the_papers():
    assert MS_SSIM_WEIGHTS == PAPER_MS_SSIM_WEIGHTS


@pytest.mark.parametrize("levels", [5, 3])
def test_ms_ssim_matches_an_independent_skimage_computation(levels):
    reconstruction, target = _pair(size=192, dtype=torch.float64)  # 192 halves evenly down to 12 px
    expected = [skimage_ms_ssim(r.numpy(), t.numpy(), levels) for r, t in zip(reconstruction, target)]
    ours = ms_ssim_index(reconstruction, target, levels=levels, size_average=False)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)


def _gaussian(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size) - size // 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


@pytest.mark.parametrize("levels, alpha", [(5, 0.84), (3, 0.5)])
def test_ms_ssim_l1_matches_the_formula(levels, alpha):
    reconstruction, target = _pair(size=192, dtype=torch.float64)
    weights = np.array(MS_SSIM_WEIGHTS[:levels]) / sum(MS_SSIM_WEIGHTS[:levels])
    ms_ssim = pytorch_msssim.ms_ssim(reconstruction, target, data_range=1.0, weights=weights.tolist()).item()
    g = _gaussian(10 * 2 ** (levels - 1) + 1, 1.5 * 2 ** (levels - 1))
    kernel = np.outer(g, g)
    error = (reconstruction - target).abs().numpy()
    weighted_l1 = np.mean(
        [scipy.signal.convolve2d(plane, kernel, mode="valid").mean() for image in error for plane in image]
    )
    expected = alpha * (1 - ms_ssim) + (1 - alpha) * weighted_l1
    ours = ms_ssim_l1_loss(reconstruction, target, alpha=alpha, levels=levels).item()
    assert ours == pytest.approx(expected, abs=1e-6)


def test_pixel_losses_match_numpy():
    reconstruction, target = _pair()
    r, t = reconstruction.double().numpy(), target.double().numpy()
    d = r - t
    delta, eps = 0.1, 1e-3
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped at -100 as PyTorch does
        log_r, log_not_r = np.maximum(np.log(r), -100), np.maximum(np.log(1 - r), -100)
    expected = {
        "mse": np.mean(d**2),
        "l1": np.mean(np.abs(d)),
        "charbonnier": np.mean(np.sqrt(d**2 + eps**2)),
        "huber": np.mean(np.where(np.abs(d) < delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))),
        "bce": -np.mean(t * log_r + (1 - t) * log_not_r),
        "gradient": np.mean(np.abs(np.diff(d, axis=3))) + np.mean(np.abs(np.diff(d, axis=2))),
    }
    for name, value in expected.items():
        assert loss_module(name)(reconstruction, target).item() == pytest.approx(value, rel=1e-5), name
    l2 = build_loss("gradient", {"distance": "l2"}, LossContext(SIZE))(reconstruction, target).item()
    assert l2 == pytest.approx(np.mean(np.diff(d, axis=3) ** 2) + np.mean(np.diff(d, axis=2) ** 2), rel=1e-5)


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum):UserWarning")  # lpips's use of torchvision
def test_lpips_matches_the_package():
    reconstruction, target = _pair()
    # Same seed, same consumption of the random stream: lpips's random trunk equals load_backbone's.
    loss = build_loss("lpips", RANDOM_NETWORK, LossContext(SIZE, seed=3))
    torch.manual_seed(3)
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    expected = reference(reconstruction, target, normalize=True).mean()
    torch.testing.assert_close(loss(reconstruction, target), expected)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"alpha": 2.0, "log_matrix": True},
        {"patch_factor": 4, "batch_matrix": True},
        {"ave_spectrum": True, "loss_weight": 0.5},
        {"alpha": 0.5, "patch_factor": 2, "ave_spectrum": True, "log_matrix": True, "batch_matrix": True},
    ],
)
def test_focal_frequency_matches_the_authors_package(params):
    reconstruction, target = _pair()
    ours_input = reconstruction.clone().requires_grad_()
    theirs_input = reconstruction.clone().requires_grad_()
    ours = focal_frequency_loss(ours_input, target, **params)
    theirs = FocalFrequencyLoss(**params)(theirs_input, target)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(ours_input.grad, theirs_input.grad, rtol=1e-4, atol=1e-9)
    assert math.isfinite(ours.item())
