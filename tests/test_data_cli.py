"""``bench3d2d data``: preview figure, info, prepare, split, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bench3d2d.cli import main


def test_preview_writes_a_figure(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["data", "preview", "synthetic-ga-s", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 100 and img.shape[1] > 400  # four panels side by side
    assert "wrote" in capsys.readouterr().out


def test_info_split_and_prepare(tmp_path, capsys):
    assert main(["data", "info", "synthetic-rpd", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["patients"] == 20 and info["annotated_scans"] == info["scans"] > 0
    assert info["shapes"] == [[32, 64, 96]] and info["lesion_area_mm2"]["mean"] > 0
    assert main(["data", "split", "synthetic-rpd", "--out", str(tmp_path / "split.json")]) == 0
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["counts"] == {"train": 12, "val": 2, "test": 6}
    assert (
        main(["data", "prepare", "synthetic-ga-m-s", "--depth", "32", "--cache-dir", str(tmp_path / "c")])
        == 0
    )
    assert "prepared" in capsys.readouterr().out
    assert main(["data", "list"]) == 0 and "synthetic-ga-s-2" in capsys.readouterr().out


def test_unknown_dataset_is_a_one_line_error(capsys):
    assert main(["data", "info", "synthetic-gas"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'synthetic-gas'" in err and "synthetic-ga-s" in err
    assert main(["data", "info", "missing/manifest.csv"]) == 2
    assert "dataset path not found" in capsys.readouterr().err


def test_prepare_defaults_fill_the_cache_run_reads(tmp_path, monkeypatch, capsys):
    from _manifests import manifest

    from bench3d2d.data import load_dataset
    from bench3d2d.data.cache import cache_key
    from bench3d2d.engine.profiles import get_profile

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH3D2D_CACHE_DIR", raising=False)
    path = manifest(tmp_path / "study" / "manifest.csv", n=3)
    assert main(["data", "prepare", str(path)]) == 0
    depth = get_profile("standard").depth  # what `run` (profile standard, --out results) prepares
    assert f"at depth {depth}" in capsys.readouterr().out
    ds = load_dataset(str(path))
    assert (
        tmp_path / "results" / "cache" / f"{ds.namespace}-{cache_key(ds.namespace, depth, True)}"
    ).is_dir()
    monkeypatch.setenv("BENCH3D2D_CACHE_DIR", str(tmp_path / "shared"))
    assert main(["data", "prepare", str(path), "--profile", "smoke"]) == 0
    assert (tmp_path / "shared" / f"{ds.namespace}-{cache_key(ds.namespace, 64, True)}").is_dir()
