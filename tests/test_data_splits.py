"""Patient-wise splits (docs/protocol.md §1.2) and nested label fractions (docs/protocol.md §9)."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest

from bench3d2d.data import DataError, Split, label_subset, load_dataset, make_split

IDS = [f"p{i:02d}" for i in range(19)]


def test_rounding_rule_matches_protocol_example():
    split = make_split(IDS, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (11, 2, 6)  # RPD-S, 19 patients
    assert sorted(split.train + split.val + split.test) == sorted(IDS)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 0, 0)), (2, (1, 0, 1)), (3, (2, 1, 0)), (5, (3, 1, 1)), (10, (6, 1, 3)), (34, (20, 3, 11))],
)
def test_split_sizes(n, expected):
    split = make_split([f"x{i}" for i in range(n)])
    assert (len(split.train), len(split.val), len(split.test)) == expected


def test_split_is_seeded_and_order_independent():
    a = make_split(IDS, seed=3)
    b = make_split(list(reversed(IDS)), seed=3)
    c = make_split(IDS, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.train != c.train


def test_patient_in_two_parts_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"patient 'p01' is in both train and test"):
        Split(train=["p01", "p02"], val=["p03"], test=["p01"])
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["a"], "val": ["a"], "test": []}))
    with pytest.raises(DataError, match=r"split\.json.*'a' is in both train and val"):
        Split.from_json(path)


def test_json_round_trip_is_atomic(tmp_path):
    split = make_split(IDS, seed=1, dataset="demo")
    path = split.to_json(tmp_path / "sub" / "split.json")
    assert Split.from_json(path) == split
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temp file left behind
    assert json.loads(path.read_text())["counts"] == {"train": 11, "val": 2, "test": 6}


def test_duplicate_patient_ids_are_rejected():
    with pytest.raises(DataError, match="duplicate patient ids"):
        make_split(["a", "b", "a"])


def test_label_fractions_are_nested_seeded_and_at_least_one():
    train = make_split(IDS, seed=0).train  # 11 patients
    for seed in range(5):
        subsets = [label_subset(train, f, seed) for f in (5, 10, 20, 100)]
        assert [len(s) for s in subsets] == [1, 1, 2, 11]
        for small, big in itertools.pairwise(subsets):
            assert set(small) <= set(big)
        assert set(subsets[-1]) == set(train)
    assert {tuple(label_subset(train, 20, s)) for s in range(10)} != {tuple(label_subset(train, 20, 0))}
    assert label_subset(train, 20, 7) == label_subset(list(reversed(train)), "20", 7)


def test_fraction_is_read_as_an_exact_decimal():
    ids = [f"q{i:03d}" for i in range(100)]
    assert len(label_subset(ids, 29, 0)) == 29  # 0.29 * 100 is 28.999... in binary floats
    assert len(label_subset(ids, "12.5", 0)) == 12
    assert len(label_subset(ids, Decimal("5"), 0)) == 5
    for bad in (0, -5, 101, "abc"):
        with pytest.raises(ValueError):
            label_subset(ids, bad, 0)


def test_split_of_a_synthetic_cohort_leaks_no_patient():
    ds = load_dataset("synthetic-ga-s-1")
    split = make_split(ds.patient_ids(), seed=0, dataset=ds.name)
    parts = {p: name for name in ("train", "val", "test") for p in split.part(name)}
    assert set(parts) == set(ds.patient_ids())
    for item in ds.items:  # every scan (all visits, both eyes) follows its patient
        assert split.part_of(item.patient_id) == parts[item.patient_id]
    train_scans = ds.subset(split.train)
    assert {it.patient_id for it in train_scans.items} == set(split.train)
    five = label_subset(split.train, 5, seed=0)
    assert len(five) >= 1 and set(five) <= set(label_subset(split.train, 10, seed=0))
