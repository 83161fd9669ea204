"""The sweep harness: run specs and ids, plan expansion, results store, claims, resume, failures.

The harness is tested with a fast fake backend (tests/_sweep_fake.py) in place of the engine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import _sweep_fake
import pandas as pd
import pytest

from bench3d2d._lock import ClaimLock, is_stale, read_claim
from bench3d2d.cli import main
from bench3d2d.harness._spec import profile_fingerprint, recipe_fingerprint
from bench3d2d.harness.sweep import (
    BENCHMARKS,
    CASE_COLUMNS,
    PlanOptions,
    ResultsStore,
    RunSpec,
    RunState,
    estimate_seconds,
    expand_plan,
    run_one,
    run_sweep,
    select_work,
)
from bench3d2d.models import _registry as registry

SPEC = RunSpec(
    model="fpbnet",
    train_dataset="synthetic-ga-s-1",
    test_sets=("synthetic-ga-s-1:test", "synthetic-ga-s-2"),
    fraction=10,
    seed=1,
    profile="smoke",
)


def counts(counters: Path) -> dict[str, int]:
    return {p.stem: len(p.read_text().split()) for p in counters.glob("*.count")}


# -- specs --------------------------------------------------------------------------------------------
def test_run_id_is_stable_and_canonical():
    same = RunSpec(
        model="fpbnet",
        train_dataset="synthetic-ga-s-1",
        test_sets=["synthetic-ga-s-1:test", "synthetic-ga-s-2"],
        fraction="10.0",
        seed=1,
        hparams={},
        benchmark="a label, not identity",
    )
    assert same.run_id == SPEC.run_id
    assert len(SPEC.run_id) == 12 and all(c in "0123456789abcdef" for c in SPEC.run_id)
    # Pinned: a change of the canonical form or schema must be deliberate (it orphans stored runs).
    canonical = (
        '{"fraction":10.0,"hparams":{},"model":"fpbnet","pretrain":"none","pretrain_source":null,'
        f'"profile":"smoke","profile_hash":"{profile_fingerprint("smoke")}",'
        f'"recipe":"common","recipe_hash":"{recipe_fingerprint("fpbnet", "common")}","schema":2,"seed":1,'
        '"test_sets":["synthetic-ga-s-1:test","synthetic-ga-s-2"],"train_dataset":"synthetic-ga-s-1"}'
    )
    assert SPEC.run_id == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert RunSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC
    # hparams key order does not matter; values do.
    a = RunSpec("m", "d", (), 5, hparams={"lr": 0.1, "batch_size": 4})
    b = RunSpec("m", "d", (), 5, hparams={"batch_size": 4, "lr": 0.1})
    assert a.run_id == b.run_id != RunSpec("m", "d", (), 5, hparams={"lr": 0.2, "batch_size": 4}).run_id
    assert SPEC.run_id != RunSpec(**{**SPEC.__dict__, "seed": 2}).run_id
    # The recipe set is part of the id: a run under IPN's official Adam is another run than under SGD.
    ipn = RunSpec("ipn", "synthetic-ga-s-1", (), 100)
    assert ipn.run_id != RunSpec("ipn", "synthetic-ga-s-1", (), 100, recipe="official").run_id
    assert ipn.pretrain_spec() is None
    ssl = RunSpec(
        "fpbnet",
        "synthetic-ga-s-1",
        (),
        5,
        pretrain="faf",
        pretrain_source="synthetic-ga-m",
        recipe="official",
    )
    assert ssl.pretrain_spec().recipe == "official"
    # Editing a profile's settings gives new ids: results of the old settings are never reused.
    assert SPEC.run_id != RunSpec(**{**SPEC.__dict__, "profile_hash": "0" * 8}).run_id


def test_spec_rejects_bad_input():
    with pytest.raises(ValueError, match="percentage"):
        RunSpec("m", "d", (), 0)
    with pytest.raises(ValueError, match="pretrain must be one of"):
        RunSpec("m", "d", (), 5, pretrain="oct")
    with pytest.raises(ValueError, match="pretrain_source"):
        RunSpec("m", "d", (), 5, pretrain="slo")
    data = SPEC.to_dict()
    data["seed"] = 7
    with pytest.raises(ValueError, match="hashes to"):
        RunSpec.from_dict(data)
    with pytest.raises(ValueError, match="schema"):
        RunSpec.from_dict({**SPEC.to_dict(), "schema": 99})


# -- plans --------------------------------------------------------------------------------------------
def test_default_plan_is_the_paper_protocol():
    plan = expand_plan(models="fpbnet", fractions="5,10,20,100")
    assert {s.seed for s in plan.runs} == {0, 1, 2}  # three seeds by default
    plan = expand_plan(models="fpbnet", fractions="5,10,20,100", seeds="0")
    ga = [s for s in plan.runs if s.benchmark == "ga"]
    rpd = [s for s in plan.runs if s.benchmark == "rpd"]
    # fpbnet is tagged ssl: scratch, SLO and FAF at every fraction.
    assert len(ga) == 3 * 4 and len(rpd) == 3 * 2
    assert {s.fraction for s in rpd} == {20.0, 100.0}
    assert {s.test_sets for s in ga} == {BENCHMARKS["ga"].test_sets}
    assert ga[0].test_sets == ("synthetic-ga-s-1:test", "synthetic-ga-s-2", "synthetic-ga-m-s")
    assert {s.pretrain_source for s in plan.runs if s.pretrain != "none"} == {"synthetic-ga-m"}
    # One shared pre-training per (model, modality, source, seed, profile): 2, not one per run.
    assert len(plan.pretrainings) == 2
    assert len({s.run_id for s in plan.runs}) == len(plan.runs)


def test_plan_options():
    ssl_models = [m for m in registry.list_models() if "ssl" in registry.model_info(m).tags]
    plan = expand_plan(models="all", fractions="5", datasets="ga", pretrain="none,slo", seeds="0-2")
    n_models = len(registry.list_models())
    assert len(plan.runs) == 3 * (n_models + len(ssl_models))
    plan = expand_plan(models="fpbnet", fractions="5,10", datasets="rpd", seeds="0")
    assert plan.runs == [] and any("rpd" in n for n in plan.notes)
    with pytest.raises(LookupError, match="fpbnet"):
        expand_plan(models="fpbnte")
    with pytest.raises(LookupError, match="no registered model matches"):
        expand_plan(models="zzz*")
    with pytest.raises(LookupError, match="benchmark groups"):
        expand_plan(models="fpbnet", datasets="no-such-dataset")
    with pytest.raises(ValueError, match="profile"):
        expand_plan(models="fpbnet", profile="slow")
    with pytest.raises(ValueError, match="pre-training"):
        expand_plan(models="fpbnet", pretrain="none,oct")


def test_plan_with_a_registered_dataset():
    plan = expand_plan(
        models="fpbnet", fractions="20", datasets="synthetic-rpd", pretrain="none,slo", seeds="0"
    )
    assert [(s.train_dataset, s.test_sets, s.pretrain) for s in plan.runs] == [
        ("synthetic-rpd", ("synthetic-rpd:test",), "none")
    ]
    assert any("no pre-training source" in n for n in plan.notes)
    plan = expand_plan(
        models="fpbnet",
        fractions="20",
        datasets="synthetic-rpd",
        pretrain="slo",
        seeds="0",
        options=PlanOptions(pretrain_source="synthetic-ga-m"),
    )
    assert len(plan.runs) == 1 and plan.runs[0].pretrain_source == "synthetic-ga-m"


# -- claims -------------------------------------------------------------------------------------------
def test_claim_is_exclusive_and_taken_over_when_stale(tmp_path):
    path = tmp_path / "claim.json"
    first = ClaimLock(path, heartbeat=None)
    assert first.acquire()
    second = ClaimLock(path, heartbeat=None)
    assert not second.acquire()
    info = read_claim(path)
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and not is_stale(info)
    first.release()
    assert not path.exists()
    assert second.acquire()
    second.release()

    # A dead process on this host: stale at once.
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(proc.stdout), "token": "x"}))
    assert is_stale(read_claim(path))
    third = ClaimLock(path, heartbeat=None)
    assert third.acquire()
    assert read_claim(path)["token"] == third.token
    third.release()

    # Another host: stale only when its heartbeat is old.
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y"}))
    assert not ClaimLock(path, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))
    fourth = ClaimLock(path, stale_after=60, heartbeat=None)
    assert fourth.acquire()
    fourth.release()


def test_claim_heartbeat_keeps_it_fresh(tmp_path):
    path = tmp_path / "claim.json"
    claim = ClaimLock(path, stale_after=60, heartbeat=0.05)
    assert claim.acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))
    time.sleep(0.3)
    assert read_claim(path)["age"] < 5
    claim.release()


def test_release_never_deletes_someone_elses_claim(tmp_path):
    path = tmp_path / "claim.json"
    claim = ClaimLock(path, heartbeat=None)
    assert claim.acquire()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
    claim.release()
    assert path.exists()


# -- run_one and the store ----------------------------------------------------------------------------
def test_run_one_writes_the_store_layout(tmp_path, fake_env):
    store = ResultsStore(tmp_path / "results")
    seen = []
    outcome = run_one(SPEC, store, backend=_sweep_fake, progress=lambda c, t, d="": seen.append((c, t)))
    assert outcome.status == "complete"
    folder = store.run_dir(SPEC.run_id)
    assert {p.name for p in folder.iterdir()} >= {"spec.json", "log.txt", "cases.csv", "result.json"}
    assert not (folder / "claim.json").exists() and not (folder / "error.json").exists()
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "complete" and result["run_id"] == SPEC.run_id and result["seconds"] >= 0
    cases = pd.read_csv(folder / "cases.csv")
    assert list(cases.columns) == list(CASE_COLUMNS) and len(cases) == 6
    assert {r["test_set"] for r in result["summary"]} == set(SPEC.test_sets)
    assert "validation 3" in (folder / "log.txt").read_text()
    assert seen[-1] == (3, 3)
    assert store.state(SPEC.run_id) is RunState.COMPLETE
    # Complete: never executed again.
    assert run_one(SPEC, store, backend=_sweep_fake).status == "skipped"
    assert counts(fake_env) == {SPEC.run_id: 1}
    with pytest.raises(FileExistsError):
        store.write_result(SPEC, cases, {})


def test_a_torn_result_is_not_complete(tmp_path, fake_env):
    store = ResultsStore(tmp_path)
    store.write_spec(SPEC)
    folder = store.run_dir(SPEC.run_id)
    (folder / "result.json").write_text('{"status": "compl')
    assert store.state(SPEC.run_id) is RunState.PENDING
    (folder / "log.txt").write_text("started\n")
    assert store.state(SPEC.run_id) is RunState.INCOMPLETE
    assert run_one(SPEC, store, backend=_sweep_fake).status == "complete"


def test_run_one_skips_a_run_another_worker_holds(tmp_path, fake_env):
    store = ResultsStore(tmp_path)
    store.write_spec(SPEC)
    held = ClaimLock(store.claim_path(SPEC.run_id), heartbeat=None)
    assert held.acquire()
    assert store.state(SPEC.run_id) is RunState.RUNNING
    outcome = run_one(SPEC, store, backend=_sweep_fake)
    assert outcome.status == "busy" and "pid" in outcome.error
    held.release()
    assert counts(fake_env) == {}


def test_bad_case_table_is_a_failed_run(tmp_path):
    class Broken:
        @staticmethod
        def execute_run(spec, run_dir, **kw):
            return pd.DataFrame({"value": [1.0]})

        execute_pretrain = None

    store = ResultsStore(tmp_path)
    outcome = run_one(SPEC, store, backend=Broken)
    assert outcome.status == "failed" and "lacks the column" in outcome.error
    err = store.error(SPEC.run_id)
    assert err["type"] == "ValueError" and "Traceback" in err["traceback"]


# -- sweeps -------------------------------------------------------------------------------------------
@pytest.fixture
def raising_model():
    @registry.register_model(name="test_raises_on_build", tags=("test",))
    def test_raises_on_build(in_channels=1, out_channels=1, depth=None, **kwargs):
        raise RuntimeError("this model cannot be built")

    yield "test_raises_on_build"
    registry._REGISTRY.pop("test_raises_on_build", None)


def test_a_model_that_raises_is_a_failed_run_and_the_sweep_goes_on(tmp_path, fake_env, raising_model):
    store = ResultsStore(tmp_path / "results")
    plan = expand_plan(
        models=["fpbnet", raising_model], fractions="5,100", datasets="ga", pretrain="none", seeds="0"
    )
    assert len(plan.runs) == 4
    report = run_sweep(plan, store)
    assert report.count("complete") == 2 and report.count("failed") == 2
    for spec in plan.runs:
        state = store.state(spec.run_id)
        if spec.model == raising_model:
            assert state is RunState.FAILED
            err = store.error(spec.run_id)
            assert err["type"] == "RuntimeError" and "cannot be built" in err["message"]
            assert "test_raises_on_build" in err["traceback"]
        else:
            assert state is RunState.COMPLETE
    # A rerun skips complete and failed runs; --retry-failed retries only the failed ones.
    again = run_sweep(plan, store)
    assert again.outcomes == [] and again.skipped_complete == 2 and again.skipped_failed == 2
    retried = run_sweep(plan, store, retry_failed=True)
    assert {o.status for o in retried.outcomes} == {"failed"} and len(retried.outcomes) == 2
    c = counts(fake_env)
    assert all(c[s.run_id] == (2 if s.model == raising_model else 1) for s in plan.runs)


def test_pretraining_is_shared_and_done_first(tmp_path, fake_env):
    store = ResultsStore(tmp_path)
    plan = expand_plan(models="fpbnet", fractions="5,10", datasets="ga", pretrain="none,slo,faf", seeds="0")
    assert len(plan.runs) == 6 and len(plan.pretrainings) == 2
    report = run_sweep(plan, store)
    assert [o.kind for o in report.outcomes] == ["pretrain"] * 2 + ["run"] * 6
    assert report.count("complete") == 6 and report.count("complete", "pretrain") == 2
    c = counts(fake_env)
    assert all(c[p.key] == 1 for p in plan.pretrainings)
    for pre in plan.pretrainings:
        result = json.loads((store.pretrain_path(pre) / "result.json").read_text())
        assert result["status"] == "complete" and Path(result["weights"]).is_file()


def test_a_failed_pretraining_fails_its_runs_once(tmp_path, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_PRETRAIN", "fpbnet")
    store = ResultsStore(tmp_path)
    plan = expand_plan(models="fpbnet", fractions="5,10", datasets="ga", pretrain="none,slo", seeds="0")
    report = run_sweep(plan, store)
    assert report.count("failed", "pretrain") == 1
    assert report.count("complete") == 2 and report.count("failed") == 2
    for spec in plan.runs:
        if spec.pretrain == "slo":
            assert "pre-training" in store.error(spec.run_id)["message"]
    assert counts(fake_env)[plan.pretrainings[0].key] == 1  # not retried by each dependent run


def test_dry_run_and_status(tmp_path, fake_env, capsys):
    out = tmp_path / "results"
    args = [
        "--models",
        "fpbnet",
        "--fractions",
        "5,20",
        "--datasets",
        "ga,rpd",
        "--seeds",
        "0",
        "--out",
        str(out),
    ]
    assert main(["run", *args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "plan: 9 runs (ga: 6, rpd: 3), 1 models, 2 SSL pre-trainings" in text
    assert "0 complete" in text and "9 to run" in text and "per-profile fallback table" in text
    assert not out.exists()  # a dry run writes nothing
    assert main(["run", *args, "--pretrain", "none", "--no-progress"]) == 0
    assert main(["run", *args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "3 complete" in text and "6 to run" in text and "timings of complete runs" in text
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 runs — 3 complete, 0 failed" in text
    assert main(["status", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"]["complete"] == 3 and summary["total"] == 3


def test_status_shows_failed_running_incomplete_pending(tmp_path, fake_env, capsys, monkeypatch):
    store = ResultsStore(tmp_path)
    specs = [
        RunSpec("fpbnet", "synthetic-ga-s-1", ("synthetic-ga-s-1:test",), f, benchmark="ga")
        for f in (5, 10, 20, 100)
    ]
    monkeypatch.setenv("FAKE_FAIL_MODELS", "fpbnet")
    run_one(specs[0], store)
    store.write_spec(specs[1])
    ClaimLock(store.claim_path(specs[1].run_id), heartbeat=None).acquire()
    store.write_spec(specs[2])
    (store.run_dir(specs[2].run_id) / "log.txt").write_text("interrupted")
    store.write_spec(specs[3])
    assert main(["status", str(tmp_path), "--failed"]) == 0
    text = capsys.readouterr().out
    assert "0 complete, 1 failed, 1 running, 1 incomplete" in text and "1 pending" in text
    assert "fake failure of fpbnet" in text


def test_estimate_uses_store_timings(tmp_path, fake_env):
    store = ResultsStore(tmp_path)
    plan = expand_plan(models="fpbnet", fractions="5,10,20,100", datasets="ga", pretrain="none", seeds="0")
    seconds, how = estimate_seconds(select_work(plan, store), store, jobs=2)
    assert "fallback" in how and seconds > 0
    run_one(plan.runs[0], store)
    result = store.run_dir(plan.runs[0].run_id) / "result.json"
    data = json.loads(result.read_text())
    data["seconds"] = 30.0
    result.write_text(json.dumps(data))
    seconds, how = estimate_seconds(select_work(plan, store), store, jobs=1)
    assert seconds == pytest.approx(90.0) and "timings" in how


def _hold(path: str, log: str, start: float, wait: bool) -> None:
    """Child process: take the claim (at ``start``), hold it briefly, log the interval."""
    while time.time() < start:
        time.sleep(0.001)
    claim = ClaimLock(path, heartbeat=None)
    if claim.acquire(wait=wait, poll=0.01):
        t0 = time.time()
        time.sleep(0.15)
        t1 = time.time()
        claim.release()
        with open(log, "a") as fh:
            fh.write(f"{t0} {t1}\n")


@pytest.mark.parametrize("stale_first", [False, True])
def test_claims_race_between_processes(tmp_path, stale_first):
    import multiprocessing

    path, log = tmp_path / "claim.json", tmp_path / "held.log"
    if stale_first:  # a dead worker's claim: exactly one racer may take it over
        proc = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(proc.stdout), "token": "dead"}))
    ctx = multiprocessing.get_context("fork")
    start = time.time() + 0.5
    procs = [ctx.Process(target=_hold, args=(str(path), str(log), start, not stale_first)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    # Waiting racers all get it in turn; after a dead worker's claim, at least one takes it over.
    assert len(spans) == 4 if not stale_first else len(spans) >= 1
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # never two at once
    assert not path.exists()


def test_a_stored_pretraining_spec_reads_back_with_its_recipe(tmp_path):
    """Workers (subprocess, SLURM) rebuild a pre-training from its spec.json: every field comes back,
    the recipe set included, so the key matches."""
    from bench3d2d.harness._runner import read_pretrain_spec, write_pretrain_spec
    from bench3d2d.harness._spec import PretrainSpec

    store = ResultsStore(tmp_path / "results")
    pre = PretrainSpec("fpbnet", "synthetic-ga-m", "faf", "smoke", seed=2, recipe="official")
    write_pretrain_spec(pre, store)
    assert read_pretrain_spec(store, pre.key) == pre
