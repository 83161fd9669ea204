"""The measurements behind docs/diagnostics.md "RPD": lesion statistics, separability, pixel AUC."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def diag():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield _load("diagnose_rpd")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
        sys.modules.pop("diagnose_rpd", None)
        sys.modules.pop("diagnose_init", None)


@pytest.fixture(scope="module")
def init_mod(diag):
    return sys.modules["diagnose_init"]


def test_lesion_stats_counts_components_sizes_and_empty_scans(diag):
    dots = np.zeros((8, 8), np.float32)
    dots[0, 0] = dots[4, 4] = dots[4, 5] = 1  # a single pixel and a 2-pixel component
    empty = np.zeros((8, 8), np.float32)
    s = diag.lesion_stats([dots, empty])
    assert s["scans"] == 2 and s["empty_scans"] == 1
    assert s["components_per_scan"] == 1.0
    assert s["single_pixel_components"] == 0.5
    assert s["component_px_p10_p50_p90"][1] == 1.5
    assert s["pos_frac_mean"] == pytest.approx(3 / 128)


def test_separability_is_the_standardised_mean_difference_per_feature(diag):
    rng = np.random.default_rng(0)
    labels = np.arange(20000) % 2 == 0
    noise = rng.standard_normal((20000, 2))
    features = noise + np.stack([labels * 1.0, np.zeros(20000)], axis=1)
    d = diag.separability(features, labels)
    assert d[0] == pytest.approx(1.0, abs=0.05)
    assert abs(d[1]) < 0.05


def test_auc_ranks_lesion_pixels_above_background(init_mod):
    labels = np.array([0, 0, 1, 1])
    assert init_mod.auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert init_mod.auc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert init_mod.auc(np.full(4, 0.5), labels) == 0.5
    assert np.isnan(init_mod.auc(np.ones(3), np.zeros(3)))


def test_diagnostic_build_feeds_ipn_its_input_unscaled(init_mod):
    # the script applies the x64 of "official-x64" itself; the model must not multiply again
    model = init_mod.build("ipn", 32, "official-x64", 0)
    assert model.input_scale == 1.0
    assert init_mod.input_scale("official-x64") == 64.0 and init_mod.input_scale("default") == 1.0


def test_rpd_masks_label_the_generators_deposits(diag):
    rec = diag.label_check(eyes=1)
    assert rec["deposits"] > 20
    assert rec["deposits_reaching_half_a_pixel"] > 0.9
    assert rec["mask_frac"][0] == pytest.approx(rec["footprint_frac"][0], abs=0.01)
    assert 0 < rec["mean_height_mm_at_mask"] < 0.045
