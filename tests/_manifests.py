"""Tiny manifest datasets for the data-check and dry-run tests (8 x 32 x 16 volumes, one scan per patient)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

H, W, D = 8, 32, 16
HEADER = ["scan_id", "patient_id", "eye", "volume", "mask", "spacing_h", "spacing_w", "spacing_d"]


def scan_files(root: Path, i: int, nan: bool = False, mask_value: float = 1.0) -> tuple[str, str]:
    """Write ``v<i>.npy`` and ``m<i>.npy``; return their names."""
    vol = np.random.default_rng(i).random((H, W, D)).astype(np.float32)
    if nan:
        vol[1, 2, 3] = np.nan
    mask = np.zeros((H, W), np.float32)
    mask[2:5, 4:12] = 1
    mask[6, 4:12] = mask_value
    np.save(root / f"v{i}.npy", vol)
    np.save(root / f"m{i}.npy", mask)
    return f"v{i}.npy", f"m{i}.npy"


def manifest(path: Path, n: int = 4, header: list[str] = HEADER, edit=None) -> Path:
    """A manifest of ``n`` scans of ``n`` patients at ``path``; ``edit(i, row)`` changes a row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)]
    for i in range(n):
        vol, mask = scan_files(path.parent, i)
        row = {"scan_id": f"s{i}", "patient_id": f"p{i}", "eye": "OD", "volume": vol, "mask": mask,
               "spacing_h": "0.1", "spacing_w": "0.01", "spacing_d": "0.005"}  # fmt: skip
        row = edit(i, row) if edit else row
        lines.append(",".join(str(row.get(h, "")) for h in header))
    path.write_text("\n".join(lines) + "\n")
    return path
