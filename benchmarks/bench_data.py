"""The data pipeline (prepared cache -> augmented batch) against the training step it feeds.

Each group holds ``make_batch`` (memory-mapped prepared volumes, crop, flips, intensity, stack)
and the accelerated FPB net training step of the same shape; ``summarize.py`` reports the
loading time as a percentage of the step.
"""

from __future__ import annotations

import numpy as np
import pytest
from _bench import input_shape, loadavg, quick_shape, train_step

from bench3d2d.data import load_dataset, prepare
from bench3d2d.engine._sources import make_batch
from bench3d2d.engine.profiles import get_profile

DATASET = "synthetic-ga-s-1"


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory):
    """The smoke profile's prepared cache of the synthetic GA-S-1 cohort."""
    prof = get_profile("smoke")
    return prepare(load_dataset(DATASET, size=prof.data_size), prof.depth, tmp_path_factory.mktemp("quick"))


@pytest.fixture(scope="module")
def paper_cache(tmp_path_factory):
    """Paper-size synthetic scans (49 x 512 x 496 raw -> depth 128) of one patient, prepared."""
    ds = load_dataset(DATASET, size="paper")
    return prepare(ds.subset(ds.patient_ids()[:1]), 128, tmp_path_factory.mktemp("paper"))


def _loader(cache, batch: int, crop: tuple[int, int]):
    rng = np.random.default_rng(0)
    ids = [cache.case_ids[i % len(cache.case_ids)] for i in range(batch)]

    def load():
        return make_batch(cache, ids, "mask", crop, True, rng)

    return load


def _bench(benchmark, fn, group: str, shape, rounds: int) -> None:
    benchmark.group = group
    benchmark.extra_info.update({"shape": list(shape), "loadavg_before": loadavg()})
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)


def test_load_quick(benchmark, quick_cache):
    batch, h, w, d = quick_shape()
    _bench(benchmark, _loader(quick_cache, batch, (h, w)), "data vs step: quick", (batch, 1, h, w, d), 20)


def test_step_quick(benchmark):
    shape = input_shape("fpbnet", *quick_shape())
    _bench(benchmark, train_step("fpbnet", shape, "fast"), "data vs step: quick", shape, 5)


def test_load_paper_crop(benchmark, paper_cache):
    shape = (2, 1, 32, 256, 128)
    _bench(benchmark, _loader(paper_cache, 2, (32, 256)), "data vs step: (2,1,32,256,128)", shape, 10)


def test_step_paper_crop(benchmark):
    shape = (2, 1, 32, 256, 128)
    _bench(benchmark, train_step("fpbnet", shape, "fast"), "data vs step: (2,1,32,256,128)", shape, 2)
