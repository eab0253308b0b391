"""Every suite entry becomes a weighted sum of terms; a single loss is a sum of one term."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bench.errors import BenchInputError
from bench.losses.registry import LossContext, build_loss


class WeightedSum(nn.Module):
    """sum_i weight_i * loss_i(reconstruction, target), keeping each term's value for logging.

    ``forward`` returns the total and the unweighted term values as tensors (not floats), so the training
    loop decides when to pay for a device-to-host copy.
    """

    def __init__(self, labels: Sequence[str], weights: Sequence[float], losses: Sequence[nn.Module]) -> None:
        super().__init__()
        if not (len(labels) == len(weights) == len(losses) > 0):
            raise ValueError("a weighted sum needs one label and one weight per loss, and at least one loss")
        self.labels = list(labels)
        self.weights = [float(w) for w in weights]
        self.terms = nn.ModuleList(losses)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        values = {label: term(reconstruction, target) for label, term in zip(self.labels, self.terms)}
        total = sum(w * v for w, v in zip(self.weights, values.values()))
        return total, values

    @property
    def weights_used(self) -> str:
        """Provenance of each pretrained network inside, e.g. ``"perceptual=random"``; ``"none"`` if none."""
        used = [
            f"{label}={term.weights_used}"
            for label, term in zip(self.labels, self.terms)
            if hasattr(term, "weights_used")
        ]
        return "; ".join(used) or "none"

    @property
    def loss_config(self) -> str:
        """What each term chose for the image size it was built for (MS-SSIM's ``levels="auto"``), e.g.
        ``"ms_ssim: levels=3 at 64px"``; "" when no term chose anything."""
        return "; ".join(
            f"{label}: {term.notes}" for label, term in zip(self.labels, self.terms) if getattr(term, "notes", "")
        )

    @property
    def learned(self) -> str:
        """The values of loss parameters learned with the model, e.g. ``"robust_adaptive: alpha=1.2, scale=0.04"``;
        "" when no term has any."""
        return "; ".join(
            f"{label}: {term.extra_repr()}"
            for label, term in zip(self.labels, self.terms)
            if any(parameter.requires_grad for parameter in term.parameters())
        )


LOSS_NETWORK_SEED = 0  # random-fallback loss networks are one fixed instrument for every entry and seed


def build_entry_loss(entry, context: LossContext) -> WeightedSum:
    """The loss module of a suite entry (``bench.config.suite.Entry``)."""
    losses = [build_loss(term.loss, term.params, context) for term in entry.terms]
    return WeightedSum([term.label for term in entry.terms], [term.weight for term in entry.terms], losses)


def build_suite_losses(
    suite, image_size: int, device: torch.device, precision: str = "fp32"
) -> dict[str, WeightedSum | Exception]:
    """Every entry's loss for images of ``image_size``, its loss networks at ``precision``, built up front so a bad parameter (a factory's
    ValueError) stops a run at once. Any other exception a factory raises is a fault of that loss alone: it
    takes the loss's place, traceback included, and fails that entry when it runs."""
    context = LossContext(image_size=image_size, seed=LOSS_NETWORK_SEED, precision=precision)
    losses: dict[str, WeightedSum | Exception] = {}
    for entry in suite.entries:
        try:
            losses[entry.name] = build_entry_loss(entry, context).to(device)
        except ValueError as error:
            raise BenchInputError(
                str(error),
                where=f"{suite.path}: entry {entry.name}",
                fix="change the loss parameters (see `python -m bench list`)",
            ) from None
        except BenchInputError:
            raise
        except Exception as error:  # user code may raise anything; the entry reports it when it runs
            losses[entry.name] = error
    return losses


def freeze(module: nn.Module) -> nn.Module:
    """Loss networks are fixed measuring instruments: eval mode, no gradients to their parameters."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
