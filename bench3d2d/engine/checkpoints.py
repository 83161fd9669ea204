"""Checkpoint files: plain dicts of tensors plus JSON-able metadata, loadable with ``weights_only=True``.

Two kinds (``docs/protocol.md`` §7):

* **weights** (top-k and pre-trained): ``{"format", "kind": "weights", "meta", "state_dict"}``,
  the model's parameters and buffers only (a top-k file of a run in progress also holds
  ``"resume"``: the resumable state of its step, dropped when the fit finishes);
* **last** (resumable state): ``{"format", "kind": "last", "meta", "state_dict", "optimizer",
  "rng", "progress"}``.

``meta`` names the architecture (registry name, factory kwargs, depth, in/out channels) and a
fingerprint of the parameter names and shapes; loading into another architecture raises
:class:`ArchitectureMismatchError`, naming the file and both architectures. Files are written
atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench3d2d._io import atomic_write_bytes

FORMAT = "bench3d2d-checkpoint/1"


class ArchitectureMismatchError(ValueError):
    """A checkpoint was saved from a different architecture than the model it is loaded into."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a bench3d2d checkpoint."""


def fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Short hash of the sorted (name, shape) pairs of a state dict."""
    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state_dict.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def architecture(model: nn.Module) -> dict[str, Any]:
    """JSON-able description of a built model: registry name, kwargs, depth, channels, fingerprint."""
    info = dict(getattr(model, "build_info", {}) or {})
    info.setdefault("model", getattr(model, "registry_name", type(model).__name__))
    info["fingerprint"] = fingerprint(model.state_dict())
    info["n_tensors"] = len(model.state_dict())
    return info


def describe(arch: Mapping[str, Any]) -> str:
    """One-line text of an architecture record, e.g. ``fpbnet(depth=64, in=1, out=1, kwargs={})``."""
    return (
        f"{arch.get('model', '?')}(depth={arch.get('depth', '?')}, in={arch.get('in_channels', '?')}, "
        f"out={arch.get('out_channels', '?')}, kwargs={arch.get('kwargs', {})}, "
        f"fingerprint={arch.get('fingerprint', '?')})"
    )


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    buf = io.BytesIO()
    torch.save(obj, buf)  # serialise in memory: one large write is much faster than many small ones
    atomic_write_bytes(path, buf.getbuffer())


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_weights(
    model: nn.Module, path: Path, *, resume: Mapping[str, Any] | None = None, **meta: Any
) -> None:
    """Write a weights checkpoint (parameters and buffers) with metadata ``meta``.

    ``resume``: the resumable training state of this step (optimiser, RNG, progress), kept by
    ``fit`` in top-k files while a run is in progress so that it can heal an unreadable ``last.pt``.
    """
    obj = {
        "format": FORMAT,
        "kind": "weights",
        "meta": {**architecture(model), **meta},
        "state_dict": _cpu_state(model),
    }
    if resume is not None:
        obj["resume"] = dict(resume)
    atomic_torch_save(obj, path)


def drop_resume(path: Path) -> None:
    """Rewrite a weights checkpoint without its resumable state (no-op when it has none)."""
    ckpt = read(path)
    if "resume" in ckpt:
        del ckpt["resume"]
        atomic_torch_save(ckpt, path)


def read(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a bench3d2d checkpoint (expected format {FORMAT!r})")
    return ckpt


def check_architecture(model: nn.Module, meta: Mapping[str, Any], path: Path | str) -> None:
    """Raise :class:`ArchitectureMismatchError` unless ``meta`` describes ``model``'s architecture."""
    mine = architecture(model)
    same_name = meta.get("model") == mine.get("model")
    same_shapes = meta.get("fingerprint") == mine["fingerprint"]
    if not (same_name and same_shapes):
        raise ArchitectureMismatchError(
            f"checkpoint {path} holds {describe(meta)}, which cannot be loaded into {describe(mine)}"
        )


def load_weights(model: nn.Module, path: Path, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (architecture checked first); return its metadata."""
    ckpt = read(path)
    check_architecture(model, ckpt.get("meta", {}), path)
    model.load_state_dict(ckpt["state_dict"], strict=strict)
    return dict(ckpt.get("meta", {}))
