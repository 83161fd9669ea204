"""A full or read-only disk is one line naming the folder and what to do, and the rerun after the disk
is fixed retries what failed for that reason (issue 22b). Fast fake backend (tests/_sweep_fake.py)."""

from __future__ import annotations

import errno
import json

import pytest

from bench3d2d._io import disk_write_error
from bench3d2d.cli import main
from bench3d2d.harness.sweep import ResultsStore

ARGS = ["run", "--models", "fpbnet", "--fractions", "100", "--pretrain", "none", "--datasets", "rpd",
        "--seeds", "0,1", "--profile", "smoke", "--no-progress"]  # fmt: skip


def test_disk_errors_are_recognised_through_their_causes():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert disk_write_error(full) is full
    assert disk_write_error(OSError("65536 requested and 5088 written")) is not None  # numpy's short write
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/r/claim.json.takeover")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert disk_write_error(outer).errno == errno.EROFS
    assert disk_write_error(OSError(errno.ENOENT, "No such file")) is None
    assert disk_write_error(ValueError("bad")) is None


def test_a_run_failed_on_a_full_disk_is_retried_by_a_plain_rerun(tmp_path, fake_env, monkeypatch, capsys):
    import _sweep_fake

    real, calls = _sweep_fake.execute_run, []

    def full_once(spec, run_dir, **kwargs):
        calls.append(spec.run_id)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(spec, run_dir, **kwargs)

    monkeypatch.setattr(_sweep_fake, "execute_run", full_once)
    out = tmp_path / "results"
    assert main([*ARGS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("failed run")]
    assert f"cannot write {out}: No space left on device; free space" in line and "retried" in line
    failed = calls[0]
    assert json.loads((out / "runs" / failed / "error.json").read_text())["cause"] == "disk"
    assert main([*ARGS, "--out", str(out)]) == 0  # no --retry-failed needed
    assert calls.count(failed) == 2 and len(calls) == 3
    assert all(ResultsStore(out).is_complete(r) for r in set(calls))


def test_a_read_only_results_folder_is_one_line(tmp_path, fake_env, monkeypatch, capsys):
    from bench3d2d.harness import _store

    def read_only(self, spec):
        raise OSError(errno.EROFS, "Read-only file system", str(self.run_dir(spec.run_id) / "spec.json"))

    monkeypatch.setattr(_store.ResultsStore, "write_spec", read_only)
    out = tmp_path / "results"
    assert main([*ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("sweep: ")  # the plan line, then the error
    assert (
        err[1].startswith(f"bench3d2d: error: cannot write {out}/runs/") and "Read-only file system" in err[1]
    )
    assert f"make {out} writable" in err[1] and "Traceback" not in err[1]


def test_other_os_errors_still_raise(tmp_path, fake_env, monkeypatch):
    from bench3d2d.harness import _store

    def broken(self, spec):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_store.ResultsStore, "write_spec", broken)
    with pytest.raises(OSError, match="Input/output"):
        main([*ARGS, "--out", str(tmp_path / "results")])
