"""Read volumes (``.npy``, ``.nii``/``.nii.gz``, ``.tif``/``.tiff``) and 2-D images (``.png``, ``.bmp``,
``.jpg``, ``.npy``, ``.tif``) into numpy, with errors that name the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench3d2d.data.records import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "VOLUME_SUFFIXES",
    "binary_mask",
    "natural_key",
    "read_image",
    "read_volume",
    "suffix_of",
]

VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz", ".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".npy", ".tif", ".tiff")


def suffix_of(path: Path) -> str:
    """Lower-case suffix, with ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def natural_key(text: str) -> list:
    """Sort key that orders ``2.bmp`` before ``10.bmp``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def read_volume(path: str | Path, where: str = "") -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """A 3-D array and, for NIfTI, the voxel size from the header (else None)."""
    path = Path(path)
    loc = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{loc}volume file not found: {path}")
    suffix = suffix_of(path)
    zooms: tuple[float, float, float] | None = None
    try:
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            img: Any = nib.load(str(path))  # a NIfTI image (nibabel's stubs type it as any image)
            arr = np.asarray(img.dataobj)
            z = [float(v) for v in img.header.get_zooms()[:3]]
            zooms = (z[0], z[1], z[2]) if len(z) == 3 else None
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(str(path))
        else:
            raise DataError(
                f"{loc}{path}: unsupported volume format {suffix!r} (use {', '.join(VOLUME_SUFFIXES)})"
            )
        arr = np.asarray(arr)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{loc}{path}: unreadable or truncated volume ({type(exc).__name__}: {exc})"
        ) from None
    if arr.ndim > 3 and np.squeeze(arr).ndim == 3:
        arr = np.squeeze(arr)  # e.g. a NIfTI with a trailing singleton axis
    if arr.ndim != 3:
        raise DataError(f"{loc}{path}: expected a 3-D volume, got shape {arr.shape}")
    return arr, zooms


def read_image(path: str | Path, where: str = "") -> np.ndarray:
    """A 2-D image as stored (uint8/uint16/float); colour images are converted to grey."""
    path = Path(path)
    loc = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{loc}file not found: {path}")
    suffix = suffix_of(path)
    try:
        if suffix == ".npy":
            arr = np.asarray(np.load(path, allow_pickle=False))
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = np.asarray(tifffile.imread(str(path)))
        elif suffix in (".png", ".bmp", ".jpg", ".jpeg"):
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                    im = im.convert("L")
                arr = np.asarray(im)
        else:
            raise DataError(
                f"{loc}{path}: unsupported image format {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})"
            )
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{loc}{path}: unreadable or truncated image ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)
    if arr.ndim != 2:
        raise DataError(f"{loc}{path}: expected a 2-D image, got shape {arr.shape}")
    return arr


def binary_mask(arr: np.ndarray, what: str) -> np.ndarray:
    """A stored mask as uint8 {0, 1}: 0 plus at most one foreground value (0/1, 0/255); else an error."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{what}: NaN or inf pixels in a mask")
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DataError(f"{what}: mask is not binary (values {shown}; expected 0 and one foreground value)")
    return (arr > 0).astype(np.uint8)
