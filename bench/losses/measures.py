"""One record per image-quality measure: everything a table, a verdict or a report needs to know about it.

A measure is stated once, where it is registered: a loss passes its record to ``register_loss(measure=...)``
beside its factory, and a metric that is no loss (PSNR) declares its record in ``bench.evaluate.metrics``. The
metric tables, the "trained on" column, the headline's labels and the design-size flags all read these records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DesignSize:
    """The image side (px) a measure's authors designed it for, and where that number comes from.

    ``side = 0``: no size to respect, either because the measure is per pixel or because its authors state none
    (``source`` says which). Images below ``side`` are still measured, but the measure then looks at a finer
    scale than it was built for (its windows, filters or fitted constants span more of the picture), so results
    at such sizes are flagged.
    """

    side: int
    source: str

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side < 0:
            raise ValueError(f"design size must be a whole number of pixels >= 0, got {self.side!r}")

    def is_larger_than(self, side: int) -> bool:
        """Whether images of ``side`` px are smaller than the measure was designed for."""
        return side < self.side


PER_PIXEL = DesignSize(0, "per pixel: no image size")


@dataclass(frozen=True)
class Measure:
    """A measure as a held-out metric and as what a loss optimises."""

    label: str  # short name in verdicts and headlines, e.g. "FSIM"
    higher_is_better: bool  # of the measure's value (a similarity index: True; a distance or error: False)
    optimises: tuple[str, ...]  # the held-out metrics a loss of this measure optimises directly
    design: DesignSize
    reference: str  # how LossBench computes it (metrics.csv "source")
    unit: str = ""  # shown after the label in tables, e.g. "dB"
    headline: bool = True  # False where another headline metric already says the same (PSNR for MSE and L1)

    @property
    def table_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label
