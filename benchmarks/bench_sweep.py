"""A tiny sweep end to end through the CLI: plan, data preparation, training, testing, results store.

Two FPB net runs (label fractions 10 and 100 %) on the synthetic GA-S-1 cohort with the quick
profile shortened to 2 rounds x 5 steps (``--params``), in a fresh results folder each round.
"""

from __future__ import annotations

import json

import pytest
from _bench import loadavg

from bench3d2d.cli import main


@pytest.mark.sweep
def test_tiny_sweep(benchmark, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"fpbnet": {"rounds": 2, "steps_per_round": 5, "top_k": 2}}))
    counter = iter(range(100))

    def sweep() -> int:
        out = tmp_path / f"results{next(counter)}"
        return main(
            [
                "run",
                "--models",
                "fpbnet",
                "--fractions",
                "10,100",
                "--datasets",
                "synthetic-ga-s-1",
                "--pretrain",
                "none",
                "--params",
                str(params),
                "--out",
                str(out),
                "--no-progress",
            ]
        )

    benchmark.group = "sweep"
    benchmark.extra_info["loadavg_before"] = loadavg()
    code = benchmark.pedantic(sweep, rounds=1, warmup_rounds=0, iterations=1)
    assert code == 0
