"""Design-size flags: a loss trained, or a metric scored, on crops smaller than its authors designed it for.

Such a measure still gives numbers, but at a scale it was not built for (its windows, filters and fitted
constants span more of the picture than intended), so its results there say less about the measure itself.
The design sizes and their sources are the measures' records (``bench.losses.measures``).
"""

from __future__ import annotations

from typing import Iterable

from bench.losses.registry import measure_of


def below_design(names: Iterable[str], side: int) -> list[str]:
    """Those of ``names`` (losses or metrics) designed for images larger than ``side`` px, in order, once each."""
    below = []
    for name in dict.fromkeys(names):
        record = measure_of(name)
        if record is not None and record.design.is_larger_than(side):
            below.append(name)
    return below


def trained_below_design(entry, side: int) -> str:
    """Space-separated losses of ``entry`` (a suite Entry) trained on ``side`` px crops below their design size."""
    return " ".join(below_design((term.loss for term in entry.terms), side))


def with_sizes(names: Iterable[str]) -> str:
    """e.g. "fsim (256 px), vsi (256 px)"; a name whose record is not loaded (a plugin's) stands alone."""
    described = []
    for name in names:
        record = measure_of(name)
        described.append(f"{name} ({record.design.side} px)" if record else name)
    return ", ".join(described)
