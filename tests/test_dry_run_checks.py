"""``run --dry-run`` (and ``run`` before it starts) refuses what would fail after training: ``--params``
keys and values, datasets' columns, patients and the images a planned SSL pre-training needs (issue 22b).
Nothing trains here."""

from __future__ import annotations

import dataclasses
import json

import pytest
from _manifests import HEADER, manifest

from bench3d2d.cli import main
from bench3d2d.data import DataError
from bench3d2d.harness._checks import hparam_problems
from bench3d2d.harness.sweep import ResultsStore, expand_plan, select_work
from bench3d2d.harness.sweep import estimate_seconds as estimate


def _args(tmp_path, params, datasets, *extra):
    return ["run", "--models", "fpbnet,ipn", "--fractions", "100", "--seeds", "0", "--profile", "smoke",
            "--datasets", datasets, "--params", str(params), "--out", str(tmp_path / "results"),
            *extra]  # fmt: skip


def test_dry_run_names_each_problem_and_exits_non_zero(tmp_path, capsys):
    no_faf = manifest(tmp_path / "studyA" / "manifest.csv")
    no_patient = manifest(
        tmp_path / "studyB" / "manifest.csv", header=[h for h in HEADER if h != "patient_id"]
    )
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"fpbnet": {"max_step": 20}, "ipn": {"max_steps": 20}, "fpbnett": {}}))
    args = _args(tmp_path, params, f"{no_faf},{no_patient}", "--pretrain", "none,faf",
                 "--pretrain-source", str(no_faf), "--ssl-all-models")  # fmt: skip
    assert main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("problem: ")]
    expected = [
        "model 'fpbnet': unknown hyper-parameter 'max_step'; did you mean 'max_steps'?",
        "model 'ipn' with {'max_steps': 20} on profile 'smoke': ",
        f"{no_faf.resolve()}: 4 of 4 scans have no 'faf' image",
        f"{no_patient.resolve()}: missing column 'patient_id'",
        "'fpbnett' matches no model of the plan; did you mean 'fpbnet'?",
    ]
    for text in expected:
        assert sum(text in line for line in problems) == 1, (text, problems)
    assert "nothing was run" in err
    assert main(args) == 2  # a real run refuses the same way, before anything is written
    assert not (tmp_path / "results" / "runs").exists()


def test_a_wildcard_params_key_applies_to_every_model(tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"*": {"rounds": 3}, "ipn": {"rounds": 2}}))
    study = manifest(tmp_path / "study" / "manifest.csv")
    assert main([*_args(tmp_path, params, str(study), "--pretrain", "none"), "--dry-run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "fpbnet scratch" in out and "+rounds" in out


def test_hparam_problems_use_the_profiles_own_validation():
    assert hparam_problems("fpbnet", "standard", "common", {"max_steps": 400}) == []
    (line,) = hparam_problems("fpbnet", "standard", "common", {"min_steps": 40})  # no plateau stop: refused
    assert "min_steps" in line and "'fpbnet'" in line
    (line,) = hparam_problems("fpbnet", "standard", "common", {"fail_at": 2})  # a fraction of max_steps
    assert "fail_at" in line
    (line,) = hparam_problems("fpbnet", "standard", "common", {"max_steps": "many"})  # wrong type
    assert "'many'" in line


def test_the_time_estimate_includes_step_overrides(tmp_path):
    store = ResultsStore(tmp_path / "results")

    def seconds(hparams):
        plan = expand_plan("fpbnet", "100", "rpd", "none", "0", "standard")
        plan.runs = [dataclasses.replace(s, hparams=hparams) for s in plan.runs]
        return estimate(select_work(plan, store), store)[0]

    assert seconds({"max_steps": 800}) == 2 * seconds({})


def test_a_deleted_data_file_under_complete_runs_is_named_not_ignored(tmp_path, fake_env, capsys):
    study = manifest(tmp_path / "study" / "manifest.csv")
    args = ["run", "--models", "fpbnet", "--fractions", "100", "--seeds", "0", "--pretrain", "none",
            "--datasets", str(study), "--out", str(tmp_path / "results"), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (study.parent / "v2.npy").unlink()
    capsys.readouterr()
    assert main(args) == 2
    assert "row 3 (scan 's2'): volume file not found" in capsys.readouterr().err
    plan = expand_plan("fpbnet", "100", str(study), "none", "0", "standard")
    with pytest.raises(DataError, match="volume file not found"):  # the Python API says so too
        select_work(plan, ResultsStore(tmp_path / "results"))
