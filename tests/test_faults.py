"""Results you can trust after a fault: one test per finding of the fault review (issue 15).

Data fingerprints, names that cannot collide, orphan temporary folders, a manifest with a byte-order
mark, one lock scheme (four processes preparing one cache), clean failures, manifest paths outside
the manifest's folder. Verified artefacts are in tests/test_verify.py, the SIGKILL fault injection
in tests/test_sweep_kill.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench3d2d._io import TEMP_SUFFIX, remove_stale_temps, safe_name, temp_prefix
from bench3d2d._lock import ClaimLock, temp_tag
from bench3d2d.cli import main
from bench3d2d.data import DataError, load_dataset, prepare, synthetic
from bench3d2d.data.records import DataWarning
from bench3d2d.harness.executors import SweepProgress
from bench3d2d.harness.sweep import DataChangedError, ResultsStore, expand_plan, run_sweep
from bench3d2d.report.collect import collect

H, W, D = 4, 8, 12


def write_manifest(root: Path, n: int = 2, bad: int | None = None, bom: bool = False) -> Path:
    """A tiny manifest folder: ``n`` scans of ``n`` patients (scan ``bad`` holds a NaN voxel)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["scan_id,patient_id,eye,volume,mask,spacing_h,spacing_w,spacing_d"]
    rng = np.random.default_rng(0)
    for i in range(n):
        vol = rng.random((H, W, D)).astype(np.float32)
        if i == bad:
            vol[0, 0, 0] = np.nan
        np.save(root / f"v{i}.npy", vol)
        np.save(root / f"m{i}.npy", (rng.random((H, W)) > 0.5).astype(np.float32))
        rows.append(f"s{i},p{i},OD,v{i}.npy,m{i}.npy,0.1,0.01,0.005")
    path = root / "manifest.csv"
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + ("\n".join(rows) + "\n").encode("utf-8"))
    return path


def _dead_pid() -> int:
    code = "import os; print(os.getpid())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    counters = tmp_path / "counters"
    counters.mkdir()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_fake")
    monkeypatch.setenv("FAKE_COUNTER_DIR", str(counters))
    return counters


def _counts(counters: Path) -> dict[str, int]:
    return {p.stem: len(p.read_text().split()) for p in counters.glob("*.count")}


# -- 1. data fingerprints --------------------------------------------------------------------------------
def test_changed_preset_or_manifest_is_refused_and_rerun_changed_redoes_exactly_those(
    tmp_path, fake_env, monkeypatch, capsys
):
    manifest = write_manifest(tmp_path / "study", n=3)
    out = tmp_path / "results"
    args = ["run", "--models", "fpbnet", "--fractions", "100", "--pretrain", "none", "--no-progress",
            "--seeds", "0",
            "--datasets", f"rpd,{manifest}", "--out", str(out)]  # fmt: skip
    plan = expand_plan(
        models="fpbnet", fractions="100", pretrain="none", datasets=f"rpd,{manifest}", seeds="0"
    )
    rpd, own = (s.run_id for s in plan.runs)
    assert main(args) == 0
    result = json.loads((out / "runs" / own / "result.json").read_text())
    assert set(result["data"]["datasets"]) == {str(manifest.resolve())} and result["data"]["fingerprint"]
    assert main(args) == 0 and _counts(fake_env) == {rpd: 1, own: 1}  # unchanged data: nothing to do

    # Edit the manifest (another eye for one scan): that run refuses, naming itself and the options.
    manifest.write_text(manifest.read_text().replace("s1,p1,OD", "s1,p1,OS"))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert own in err and rpd not in err and "--rerun-changed" in err and "new results folder" in err
    assert _counts(fake_env) == {rpd: 1, own: 1}
    with pytest.raises(DataChangedError):
        run_sweep(plan, ResultsStore(out), progress=SweepProgress(0, enabled=False))

    # Edit the synthetic preset: the rpd run is made from other data now, too.
    preset = synthetic.PRESETS["rpd"]["quick"]
    monkeypatch.setitem(synthetic.PRESETS["rpd"], "quick", dataclasses.replace(preset, n_patients=21))
    again = expand_plan(models="fpbnet", fractions="100", pretrain="none", datasets="rpd", seeds="0")
    assert again.runs[0].run_id == rpd  # the run id does not change with the data
    assert main(args) == 2 and rpd in capsys.readouterr().err
    assert main([*args, "--rerun-changed"]) == 0
    assert _counts(fake_env) == {rpd: 2, own: 2}  # exactly the changed runs, once more
    assert main(args) == 0 and _counts(fake_env) == {rpd: 2, own: 2}
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([rpd, own])  # ids kept


def test_a_result_without_fingerprint_is_not_refused(tmp_path, fake_env):
    plan = expand_plan(models="fpbnet", fractions="100", pretrain="none", datasets="rpd", seeds="0")
    store = ResultsStore(tmp_path / "results")
    run_sweep(plan, store, progress=SweepProgress(0, enabled=False))
    path = store.run_dir(plan.runs[0].run_id) / "result.json"
    result = json.loads(path.read_text())
    del result["data"]  # written before fingerprints existed
    path.write_text(json.dumps(result))
    report = run_sweep(plan, store, progress=SweepProgress(0, enabled=False))
    assert report.skipped_complete == 1


# -- 3. names that cannot collide ------------------------------------------------------------------------
def test_case_ids_that_strip_to_one_name_get_their_own_files_and_are_found_by_id(tmp_path):
    a, b = "Иванов_OD", "Петров_OD"
    assert safe_name(a) != safe_name(b) and safe_name(a).startswith("OD~")
    assert safe_name("case00") == "case00" and safe_name("ga:test") != safe_name("ga_test")
    run = tmp_path / "results" / "runs" / "r1"
    (run / "predictions" / "ga").mkdir(parents=True)
    (run / "spec.json").write_text("{}")
    for cid, value in ((a, 0.25), (b, 0.75)):
        arrays = {k: np.full((2, 2), value, np.float32) for k in ("prob", "pred", "mask")}
        np.savez(run / "predictions" / "ga" / f"{safe_name(cid)}.npz", **arrays, case_id=np.array(cid))
    coll = collect(tmp_path / "results")
    pa, pb = coll.prediction_path("r1", "ga", a), coll.prediction_path("r1", "ga", b)
    assert pa != pb and np.load(pa)["prob"][0, 0] == 0.25 and np.load(pb)["prob"][0, 0] == 0.75
    # A file of an older version without a recorded id, under the stripped name: not taken for either.
    np.savez(run / "predictions" / "ga" / "OD.npz", **{k: np.zeros((2, 2)) for k in ("prob", "pred", "mask")})
    assert coll.prediction_path("r1", "ga", "Сидоров_OD") is None


# -- 4. orphan temporary folders ------------------------------------------------------------------------
def test_prepare_removes_orphan_temp_folders_of_killed_writers(tmp_path):
    ds = load_dataset(str(write_manifest(tmp_path / "study")))
    prepared = prepare(ds, 8, tmp_path / "cache")
    dead = _dead_pid()
    host = temp_tag().split("-")[0]
    orphan = prepared.root / f".s0.{host}-{dead}.abc123{TEMP_SUFFIX}"
    orphan.mkdir()
    (orphan / "volume.npy").write_bytes(b"")  # what a kill during np.save leaves
    untagged = prepared.root / f".s1.xyz{TEMP_SUFFIX}"  # an older version's name: judged by age
    untagged.mkdir()
    os.utime(untagged, (time.time() - 7200, time.time() - 7200))
    live = prepared.root / f"{temp_prefix('s1')}live{TEMP_SUFFIX}"  # this process writes it now
    live.mkdir()
    prepare(ds, 8, tmp_path / "cache")
    assert not orphan.exists() and not untagged.exists() and live.exists()
    assert remove_stale_temps(prepared.root) == []


# -- 5. byte-order mark --------------------------------------------------------------------------------
def test_manifest_with_a_utf8_byte_order_mark_is_read(tmp_path):
    ds = load_dataset(str(write_manifest(tmp_path / "study", bom=True)))
    assert ds.scan_ids == ["s0", "s1"]


# -- 7. one lock scheme ---------------------------------------------------------------------------------
_RACER = """
import sys, time
from pathlib import Path
from bench3d2d.data import load_dataset, prepare
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.005)
p = prepare(load_dataset(sys.argv[1]), 8, Path(sys.argv[2]))
print(len(p), p.root)
"""


def test_four_processes_preparing_one_dataset_take_turns(tmp_path):
    manifest = write_manifest(tmp_path / "study", n=6)
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = str(time.time() + 4.0)
    cmd = [sys.executable, "-c", _RACER, str(manifest), str(cache), start]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    roots = {o.split()[1] for o, _ in outs}
    assert len(roots) == 1 and all(o.split()[0] == "6" for o, _ in outs)
    root = Path(roots.pop())
    assert sorted(p.name for p in root.iterdir()) == ["index.json", *(f"s{i}" for i in range(6))]
    assert json.loads((root / "index.json").read_text())["cases"] == [f"s{i}" for i in range(6)]


def test_prepare_waits_for_the_claim_of_the_cache_folder(tmp_path):
    ds = load_dataset(str(write_manifest(tmp_path / "study")))
    key_root = prepare(ds, 8, tmp_path / "warm").root.name  # the folder name prepare will use
    root = tmp_path / "cache" / key_root
    done = threading.Event()
    with ClaimLock(root / ".claim.json", heartbeat=None):
        worker = threading.Thread(target=lambda: (prepare(ds, 8, tmp_path / "cache"), done.set()))
        worker.start()
        time.sleep(1.5)
        assert not done.is_set()  # another process holds the folder: prepare waits
        assert not (root / "s0").exists()
    worker.join(timeout=30)
    assert done.is_set() and (root / "index.json").is_file()


def test_ssl_pretraining_lock_is_a_claim(tmp_path):
    from bench3d2d.engine import ssl

    path = tmp_path / ".key.lock"
    entered = threading.Event()

    def enter() -> None:
        with ssl._lock(path):
            entered.set()

    with ClaimLock(path, heartbeat=None):
        worker = threading.Thread(target=enter)
        worker.start()
        time.sleep(1.5)
        assert not entered.is_set()  # the same claim file as the harness: it waits
    worker.join(timeout=10)
    assert entered.is_set() and not path.exists()


# -- 8. clean failures ----------------------------------------------------------------------------------
def test_a_failed_prepare_leaves_no_empty_cache_folder(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "study", bad=0)
    cache = tmp_path / "cache"
    assert main(["data", "prepare", str(manifest), "--depth", "8", "--cache-dir", str(cache)]) == 2
    assert "s0" in capsys.readouterr().err  # the error names the bad scan
    assert not cache.exists()


def test_a_failed_train_leaves_no_empty_output_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "one"
    code = main(["train", "--model", "no_such_model", "--dataset", "synthetic-rpd", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code != 0 and "no_such_model" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


# -- 9. manifest paths outside the manifest's folder -------------------------------------------------------
def test_a_manifest_path_outside_its_folder_warns_or_is_refused(tmp_path):
    manifest = write_manifest(tmp_path / "study")
    (tmp_path / "elsewhere").mkdir()
    np.save(tmp_path / "elsewhere" / "v.npy", np.zeros((H, W, D), np.float32))
    manifest.write_text(manifest.read_text().replace("v1.npy", "../elsewhere/v.npy"))
    with pytest.warns(DataWarning, match=r"outside the manifest's folder .*: row 2 volume .*elsewhere"):
        load_dataset(str(manifest))
    with pytest.raises(DataError, match="outside the manifest's folder"):
        load_dataset(str(manifest), confine_paths=True)
    manifest.write_text(manifest.read_text().replace("../elsewhere/v.npy", "v1.npy"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(str(manifest))  # inside: no warning


def test_pretraining_records_its_data_and_a_changed_source_is_refused(tmp_path, fake_env, monkeypatch):
    from bench3d2d.harness.sweep import select_work

    plan = expand_plan(models="fpbnet", fractions="100", pretrain="slo", datasets="ga", seeds="0")
    (pre,) = plan.pretrainings
    store = ResultsStore(tmp_path / "results")
    run_sweep(plan, store, progress=SweepProgress(0, enabled=False))
    result = json.loads((store.pretrain_path(pre) / "result.json").read_text())
    assert set(result["data"]["datasets"]) == {pre.source} and result["artefacts"]
    assert select_work(plan, store).changed == {}
    preset = synthetic.PRESETS["ga-m"]["quick"]
    monkeypatch.setitem(synthetic.PRESETS["ga-m"], "quick", dataclasses.replace(preset, n_patients=17))
    work = select_work(plan, store)
    assert set(work.changed) == {pre.key, plan.runs[0].run_id}  # the source feeds both
    assert work.changed[pre.key] == [pre.source] and work.pretrainings == []
    again = select_work(plan, store, rerun_changed=True)
    assert again.pretrainings == [pre] and again.runs == list(plan.runs)


def test_a_temp_file_is_judged_by_its_own_writer_tag(tmp_path):
    host = temp_tag().split("-")[0]
    dead = _dead_pid()
    mine = tmp_path / f".s.{host}-{dead}.npy.{temp_tag()}.abc{TEMP_SUFFIX}"  # a name that looks like a tag
    gone = tmp_path / f".s.npy.{host}-{dead}.abc{TEMP_SUFFIX}"
    other_host = tmp_path / f".s.npy.{'0' * 6 if host != '0' * 6 else '1' * 6}-1.abc{TEMP_SUFFIX}"
    for path in (mine, gone, other_host):
        path.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [gone]
    os.utime(other_host, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temps(tmp_path) == [other_host] and mine.exists()
