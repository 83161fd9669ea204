"""Markdown tables from pytest-benchmark JSON files: ``python benchmarks/summarize.py RESULT.json ...``.

Per group: each model's plain and accelerated times (median and best of the rounds) and their
ratio; the interleaved ``ratio`` benchmarks; data loading as a percentage of the training step.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

_PARAM = re.compile(r"^(?P<test>[^\[]+)(?:\[(?P<params>.*)\])?$")


def _split(name: str) -> tuple[str, str, str]:
    """``test_train_quick[fpbnet-fast]`` -> (test, model, impl); impl is the last dash-part."""
    m = _PARAM.match(name)
    test, params = m.group("test"), m.group("params") or ""
    for impl in ("plain-cl", "plain", "fast-bf16", "fast"):
        if params == impl:
            return test, "", impl
        if params.endswith("-" + impl):
            return test, params[: -len(impl) - 1], impl
    return test, params, ""


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 100 else f"{seconds:.1f}"


def group_tables(benchmarks: list[dict]) -> list[str]:
    """One table per group with plain / fast pairs side by side."""
    lines: list[str] = []
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in benchmarks:
        groups[b["group"] or ""].append(b)
    for group in sorted(groups):
        if group in ("ratio", "sweep") or group.startswith("data vs step"):
            continue
        rows: dict[str, dict[str, dict]] = defaultdict(dict)
        shapes: dict[str, list] = {}
        for b in groups[group]:
            _, model, impl = _split(b["name"])
            model = model or "fpbnet"
            rows[model][impl] = b["stats"]
            shapes[model] = b.get("extra_info", {}).get("shape")
        impls = [i for i in ("plain", "plain-cl", "fast", "fast-bf16") if any(i in r for r in rows.values())]
        base, new = ("fast", "fast-bf16") if "fast-bf16" in impls else ("plain", "fast")
        lines += [f"#### {group}", ""]
        head = (
            "| model | input | " + " | ".join(f"{i} median (min) s" for i in impls) + f" | {base} / {new} |"
        )
        lines += [head, "|" + "---|" * (len(impls) + 3)]
        for model in sorted(rows):
            r = rows[model]
            cells = [f"{_fmt(r[i]['median'])} ({_fmt(r[i]['min'])})" if i in r else "—" for i in impls]
            ratio = f"{r[base]['median'] / r[new]['median']:.2f}x" if base in r and new in r else "—"
            shape = "×".join(map(str, shapes[model])) if shapes.get(model) else ""
            lines.append(f"| {model} | {shape} | " + " | ".join(cells) + f" | {ratio} |")
        lines.append("")
    return lines


def ratio_table(benchmarks: list[dict]) -> list[str]:
    """The interleaved plain/fast step ratios (wall and process CPU time)."""
    rows = [b for b in benchmarks if b["group"] == "ratio"]
    if not rows:
        return []
    lines = [
        "#### plain vs fast, interleaved step by step",
        "",
        "| model | input | plain wall median s | fast wall median s | wall ratio (median / best) "
        "| CPU ratio (median / best) |",
        "|---|---|---|---|---|---|",
    ]
    for b in rows:
        e = b["extra_info"]
        lines.append(
            f"| {_split(b['name'])[1]} | {'×'.join(map(str, e['shape']))} | "
            f"{statistics.median(e['plain_wall_s']):.3f} | {statistics.median(e['fast_wall_s']):.3f} | "
            f"{e['ratio_wall_median']:.2f}x / {e['ratio_wall_min']:.2f}x | "
            f"{e['ratio_cpu_median']:.2f}x / {e['ratio_cpu_min']:.2f}x |"
        )
    return [*lines, ""]


def data_table(benchmarks: list[dict]) -> list[str]:
    """Batch loading time as a percentage of the training step of the same shape."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for b in benchmarks:
        if (b["group"] or "").startswith("data vs step"):
            kind = "load" if "load" in b["name"] else "step"
            groups[b["group"]][kind] = b
    if not groups:
        return []
    lines = [
        "#### data pipeline vs training step",
        "",
        "| shape | load batch median ms | step median s | load / step |",
        "|---|---|---|---|",
    ]
    for _, g in sorted(groups.items()):
        if "load" in g and "step" in g:
            load, step = g["load"]["stats"]["median"], g["step"]["stats"]["median"]
            shape = "×".join(map(str, g["step"]["extra_info"]["shape"]))
            lines.append(f"| {shape} | {load * 1e3:.2f} | {step:.3f} | {100 * load / step:.2f} % |")
    return [*lines, ""]


def sweep_table(benchmarks: list[dict]) -> list[str]:
    """Wall time of the tiny end-to-end sweep."""
    rows = [b for b in benchmarks if b["group"] == "sweep"]
    return [f"Tiny sweep end to end: {rows[0]['stats']['median']:.1f} s.", ""] if rows else []


def summarize(path: Path) -> str:
    """The Markdown summary of one pytest-benchmark JSON file."""
    data = json.loads(path.read_text())
    info = data.get("machine_info", {})
    extra = info.get("bench3d2d", {})
    head = [
        f"### {path.name}",
        "",
        f"{data.get('datetime', '')}; {info.get('cpu', {}).get('brand_raw', info.get('processor', ''))}; "
        f"torch {extra.get('torch')}, {extra.get('threads')} thread(s), retain_freed_memory "
        f"{extra.get('retain_freed_memory')}, load average at start {extra.get('loadavg_at_start')}, "
        f"commit {extra.get('commit')}.",
        "",
    ]
    bench = data["benchmarks"]
    return "\n".join(head + ratio_table(bench) + group_tables(bench) + data_table(bench) + sweep_table(bench))


def main(argv: list[str] | None = None) -> int:
    """Print the summary of each JSON file given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("\n".join(summarize(p) for p in args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
