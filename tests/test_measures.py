"""One record per measure: every table that lists measures (metric labels, directions and sources, the
headline's labels, the metrics a loss optimises, piq's measures) reads the record registered with the loss."""

from __future__ import annotations

import pandas as pd
import pytest

import bench
from bench.config.suite import Entry, Term
from bench.evaluate.metrics import METRICS
from bench.evaluate.tables import metric_table
from bench.evaluate.verdicts import HEADLINE_METRICS, trained_on
from bench.losses import iqa
from bench.losses.measures import DesignSize, Measure
from bench.losses.registry import _LOSSES, get_loss_info, measure_of


def test_every_metric_but_psnr_is_the_record_of_the_loss_of_that_name():
    for name, record in METRICS.items():
        assert isinstance(record, Measure) and isinstance(record.design, DesignSize)
        if name != "psnr":
            assert record is get_loss_info(name).measure, name
    assert METRICS["psnr"].table_label == "PSNR (dB)" and HEADLINE_METRICS["psnr"] == "PSNR"


def test_piq_losses_carry_their_measure_record():
    for name in iqa.MEASURE_NAMES:
        spec = iqa.measure(name)
        assert get_loss_info(name).measure is spec.record and spec.record.optimises == (name,)
        assert spec.similarity == METRICS[name].higher_is_better
        assert get_loss_info(name).summary == spec.summary and dict(get_loss_info(name).defaults) == spec.defaults


def test_design_sizes_name_their_source_and_flag_smaller_images():
    assert METRICS["fsim"].design.is_larger_than(64) and not METRICS["fsim"].design.is_larger_than(256)
    assert not METRICS["mse"].design.is_larger_than(1)
    assert METRICS["ms_ssim"].design.side == 161 and METRICS["lpips"].design.side == 64
    assert all(record.design.source for record in METRICS.values())
    with pytest.raises(ValueError, match="design size"):
        DesignSize(-1, "nowhere")


@pytest.fixture
def ssim_twin():
    """A loss registered for one test, with its own record, withdrawn afterwards."""
    record = bench.Measure("SSIM twin", True, ("ssim",), DesignSize(0, "not stated"), "a test")
    bench.register_loss("test_ssim_twin", "test only", measure=record)(lambda context: lambda x, y: (x - y).mean())
    yield record
    del _LOSSES["test_ssim_twin"]


def test_a_plugin_loss_states_what_it_optimises_once(ssim_twin):
    assert measure_of("test_ssim_twin") is ssim_twin
    entry = Entry("twin", (Term("test_ssim_twin", 1.0, {}, "test_ssim_twin"), Term("mse", 1.0, {}, "mse")))
    assert trained_on(entry) == "mse psnr ssim"
    quality = pd.DataFrame({"entry": ["twin"], "kind": ["trained"], "trained_on": [trained_on(entry)], "ssim": [0.5]})
    assert metric_table(quality).loc[0, "trained_on_by"] == "twin"
    with pytest.raises(ValueError, match="must be a bench.losses.measures.Measure"):
        bench.register_loss("test_not_a_record", "test only", measure="SSIM")


def test_losses_without_a_record_optimise_nothing():
    assert measure_of("charbonnier") is None and measure_of("no_such_loss") is None
