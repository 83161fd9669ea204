"""The synthetic cohorts: determinism, cohort structure, views, and the signal the paper relies on."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from bench3d2d.data import list_datasets, load_dataset, prepare
from bench3d2d.data.synthetic import Difficulty

#: Fixed thresholds of the "2-D modality reveals the lesion" check (docs/data.md quotes the results).
FAF_INVERTED_LEVEL = 0.7
SLO_LEVEL = 0.5


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


@pytest.fixture(scope="module")
def ga_s():
    return list(load_dataset("synthetic-ga-s").scans)


@pytest.fixture(scope="module")
def rpd():
    return list(load_dataset("synthetic-rpd").scans)


def modality_scores(scans) -> dict[str, float]:
    """Mean per-scan Dice of fixed thresholds, and the chance level (maps against the next scan's mask)."""
    faf = [dice(1 - s.faf > FAF_INVERTED_LEVEL, s.mask) for s in scans]
    slo = [dice(s.slo > SLO_LEVEL, s.mask) for s in scans]
    nxt = scans[1:] + scans[:1]
    slo_chance = [dice(s.slo > SLO_LEVEL, t.mask) for s, t in zip(scans, nxt) if s.shape == t.shape]
    return {"faf": float(np.mean(faf)), "slo": float(np.mean(slo)), "slo_chance": float(np.mean(slo_chance))}


def test_registered_names():
    names = set(list_datasets("synthetic-*"))
    assert {
        "synthetic-ga-m",
        "synthetic-ga-m-s",
        "synthetic-ga-s",
        "synthetic-ga-s-1",
        "synthetic-ga-s-2",
        "synthetic-rpd",
    } <= names


def test_quick_cohort_structure(ga_s):
    ds = load_dataset("synthetic-ga-s")
    assert len(ds.patient_ids()) == 42  # GA-S-1 then has 20 training patients (see the preset)
    eyes: dict[str, set] = {}
    visits: dict[tuple, list] = {}
    for it in ds.items:
        eyes.setdefault(it.patient_id, set()).add(it.eye)
        visits.setdefault((it.patient_id, it.eye), []).append(it.visit)
    assert all(e == {"OD", "OS"} for e in eyes.values())  # both eyes
    assert {len(v) for v in visits.values()} <= {1, 2, 3} and max(len(v) for v in visits.values()) >= 2
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in visits.values())
    s = ga_s[0]
    assert s.volume.dtype == np.float32 and s.volume.shape == (16, 64, 96)
    assert s.spacing_mm == pytest.approx((6.02 / 16, 6.03 / 64, 1.5 / 96))
    assert s.slo.shape == s.faf.shape == s.mask.shape == s.bm_surface.shape == (16, 64)
    assert s.slo.min() >= 0 and s.slo.max() <= 1 and s.faf.min() >= 0 and s.faf.max() <= 1
    assert set(np.unique(s.mask)) <= {0, 1}
    for scan in ga_s:
        scan.check()
    ga_m, ga_m_s = load_dataset("synthetic-ga-m"), load_dataset("synthetic-ga-m-s")
    assert len(ga_m) > 3 * len(ga_s)  # the paper's proportions: GA-M is ~3.6x GA-S (docs/data.md)
    assert 0.02 < len(ga_m_s) / len(ga_m) < 0.05  # GA-M-S ~3.6 % of GA-M


def test_deterministic_per_seed_and_lazy_scans_agree():
    a = load_dataset("synthetic-ga-s", seed=5)
    b = load_dataset("synthetic-ga-s", seed=5)
    c = load_dataset("synthetic-ga-s", seed=6)
    sa, sb = a.scans[3], b.scans[3]
    np.testing.assert_array_equal(sa.volume, sb.volume)
    np.testing.assert_array_equal(sa.faf, sb.faf)
    np.testing.assert_array_equal(sa.mask, sb.mask)
    assert a.namespace == b.namespace != c.namespace
    sc = c.scans[3]
    assert sa.shape == sc.shape and not np.array_equal(sa.volume, sc.volume)
    # a scan generated alone equals the same scan generated after others
    one = load_dataset("synthetic-ga-s", seed=5).subset([sa.patient_id])
    np.testing.assert_array_equal(
        one.scans[[it.scan_id for it in one.items].index(sa.scan_id)].volume, sa.volume
    )


def test_views_share_one_cohort():
    ga_s_all = load_dataset("synthetic-ga-s")
    one, two = load_dataset("synthetic-ga-s-1"), load_dataset("synthetic-ga-s-2")
    assert not set(one.patient_ids()) & set(two.patient_ids())
    assert set(one.scan_ids) | set(two.scan_ids) == set(ga_s_all.scan_ids)
    assert one.namespace == two.namespace == ga_s_all.namespace  # one prepared cache
    scan = two.scans[0]
    assert "rater2" in scan.extra_masks and scan.mask is not None
    assert not one.scans[0].extra_masks
    r12 = [dice(s.mask, s.extra_masks["rater2"]) for s in two.scans]
    assert 0.6 < np.mean(r12) < 0.99  # a perturbed boundary, not a copy

    ga_m, ga_m_s = load_dataset("synthetic-ga-m"), load_dataset("synthetic-ga-m-s")
    assert set(ga_m_s.scan_ids) < set(ga_m.scan_ids)
    assert {it.patient_id for it in ga_m.items if it.meta["annotated"]} == set(ga_m_s.patient_ids())
    pretrain = ga_m.without_patients(ga_m_s.patient_ids())
    assert not set(pretrain.patient_ids()) & set(ga_m_s.patient_ids())
    unlabelled = pretrain.scans[0]
    assert unlabelled.mask is None and unlabelled.slo is not None and unlabelled.faf is not None
    assert ga_m_s.scans[0].mask is not None


def test_ga_grows_between_visits(ga_s):
    by_eye: dict[tuple, list] = {}
    for s in ga_s:
        by_eye.setdefault((s.patient_id, s.eye), []).append((s.visit, float(s.mask.sum())))
    series = [sorted(v) for v in by_eye.values() if len(v) > 1]
    assert series
    growth = [b[1] - a[1] for v in series for a, b in itertools.pairwise(v)]
    assert np.mean(growth) > 0 and np.mean(np.asarray(growth) >= 0) > 0.8


def test_two_d_modalities_carry_the_signal_the_paper_relies_on(ga_s, rpd):
    ga = modality_scores(ga_s)
    rp = modality_scores(rpd)
    assert ga["faf"] >= 0.6  # FAF reveals GA strongly
    assert ga["slo_chance"] + 0.05 < ga["slo"] < ga["faf"]  # SLO weakly, but better than chance
    assert rp["faf"] < ga["faf"] and rp["slo"] < ga["slo"]  # both are weaker for RPD
    assert rp["faf"] < 0.3 and rp["slo"] < 0.3


def test_ga_shows_in_the_oct_as_hypertransmission(ga_s):
    """Below Bruch's membrane the signal is brighter inside GA than outside (same scans)."""
    diffs = []
    for s in ga_s[:20]:
        bm = np.rint(s.bm_surface).astype(int)
        z = np.arange(s.volume.shape[2])
        below = (z[None, None, :] > bm[..., None] + 1) & (z[None, None, :] <= bm[..., None] + 8)
        sub_bm = (s.volume * below).sum(axis=2) / below.sum(axis=2)
        m = s.mask.astype(bool)
        if m.any() and (~m).any():
            diffs.append(sub_bm[m].mean() - sub_bm[~m].mean())
    assert np.mean(diffs) > 0.03


def test_difficulty_knobs_change_the_data_and_unknown_knobs_fail():
    easy = load_dataset("synthetic-ga-s", difficulty={"faf_ga_contrast": 0.0, "faf_dark_spots": 0})
    base = load_dataset("synthetic-ga-s")
    assert easy.namespace != base.namespace
    s_easy, s_base = easy.scans[0], base.scans[0]
    inside = s_base.mask.astype(bool)
    assert (1 - s_easy.faf)[inside].mean() < (1 - s_base.faf)[inside].mean() - 0.2
    with pytest.raises(ValueError, match="unknown difficulty knob"):
        load_dataset("synthetic-ga-s", difficulty={"no_such_knob": 1})
    assert Difficulty.from_options({"speckle": 0.3}).speckle == 0.3


def test_paper_sizes_are_available_without_generating():
    ga_s = load_dataset("synthetic-ga-s", size="paper")
    assert ga_s.info["shape"] == [49, 512, 496]
    assert ga_s.info["spacing_mm"] == pytest.approx([0.123, 0.0118, 0.0039], rel=0.02)
    assert len(ga_s.patient_ids()) == 149
    assert load_dataset("synthetic-ga-m", size="paper").info["shape"] == [49, 1024, 496]
    assert load_dataset("synthetic-rpd", size="paper").info["shape"] == [97, 1024, 496]
    with pytest.raises(ValueError, match="unknown size preset"):
        load_dataset("synthetic-ga-s", size="huge")


def test_generating_and_preparing_ga_s_takes_seconds(tmp_path):
    t0 = time.process_time()
    prepared = prepare(load_dataset("synthetic-ga-s", seed=11), depth=64, cache_dir=tmp_path)
    cpu = time.process_time() - t0
    assert len(prepared) > 60 and prepared.volume(prepared.case_ids[0]).shape == (16, 64, 64)
    assert cpu < 30, f"generation + preparation took {cpu:.1f} s of CPU time"


def test_a_changed_preset_is_another_cache_namespace(monkeypatch):
    """Editing a size preset (cohort, visits, raters) must not reuse a prepared cache of the old one."""
    import dataclasses

    from bench3d2d.data import synthetic

    before = load_dataset("synthetic-ga-m").namespace
    quick = synthetic.PRESETS["ga-m"]["quick"]
    edited = dataclasses.replace(quick, annotated_patients=quick.annotated_patients + 1)
    monkeypatch.setitem(synthetic.PRESETS["ga-m"], "quick", edited)
    assert load_dataset("synthetic-ga-m").namespace != before
