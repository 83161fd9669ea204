"""En-face anatomy and lesions for the synthetic generator, on a fine isotropic grid in mm.

Coordinates: ``x`` along W (temporal ↔ nasal), ``y`` along H (B-scan index), both in mm with the
fovea at (0, 0). For a right eye (OD) the optic disc lies at +x (nasal), for a left eye at −x.
Everything here is a plain function of a ``numpy.random.Generator`` and the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "FineGrid",
    "GALesions",
    "blobs",
    "drusen_height",
    "ga_lesions",
    "rpd_deposits",
    "smooth_field",
    "vessel_tree",
]


@dataclass(frozen=True)
class FineGrid:
    """Pixel-centre coordinates (mm) of an isotropic grid covering the scan field."""

    x: np.ndarray  # (1, Nw)
    y: np.ndarray  # (Nh, 1)
    px_mm: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.shape[0], self.x.shape[1]

    @classmethod
    def make(cls, extent_hw_mm: tuple[float, float], n_w: int, fovea_xy: tuple[float, float]) -> FineGrid:
        """A grid of ``n_w`` pixels across W and as many across H as keeps pixels square."""
        eh, ew = extent_hw_mm
        px = ew / n_w
        n_h = max(8, round(eh / px))
        x = (np.arange(n_w) + 0.5) * px - ew / 2 - fovea_xy[0]
        y = (np.arange(n_h) + 0.5) * (eh / n_h) - eh / 2 - fovea_xy[1]
        return cls(x=x[None, :], y=y[:, None], px_mm=px)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], corr_px: float) -> np.ndarray:
    """Zero-mean, unit-SD random field with correlation length ``corr_px`` (coarse noise, upsampled)."""
    coarse = tuple(max(2, int(np.ceil(s / max(corr_px, 1.0))) + 3) for s in shape)
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), 0.8, mode="wrap")
    zoom = [s / c for s, c in zip(shape, coarse)]
    field = ndimage.zoom(noise, zoom, order=1, mode="nearest", grid_mode=True)[
        tuple(slice(0, s) for s in shape)
    ]
    field = field - field.mean()
    sd = field.std()
    return (field / sd if sd > 0 else field).astype(np.float32)


def vessel_tree(rng: np.random.Generator, grid: FineGrid, disc_x: float) -> np.ndarray:
    """Retinal vessel map in [0, 1]: two arcades from the disc around the fovea, with random branches."""
    segments: list[tuple[float, float, float]] = []  # (x, y, radius) samples along centrelines
    step = grid.px_mm * 0.7
    half_w = float(np.abs(grid.x).max()) + 0.5
    half_h = float(np.abs(grid.y).max()) + 0.5
    side = float(np.sign(disc_x))  # +1: disc at +x (OD)
    r_disc = abs(disc_x)

    def branch(x: float, y: float, ang: float, radius: float, length: float, level: int) -> None:
        for _ in range(int(length / step)):
            ang += rng.normal(0, 0.06)
            x, y = x + step * np.cos(ang), y + step * np.sin(ang)
            if np.hypot(x, y) < 0.35 or abs(x) > half_w or abs(y) > half_h:
                return  # foveal avascular zone, or outside the field
            segments.append((x, y, radius))
            radius = max(radius * (1 - 0.15 * step), 0.01)
            if level < 2 and rng.random() < 0.5 * step:
                child = ang + rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 1.1)
                branch(x, y, child, radius * 0.7, length * 0.5, level + 1)

    for up in (1.0, -1.0):
        for _ in range(2):  # artery and vein of each arcade
            arc_r = rng.uniform(2.3, 3.2)
            wobble = rng.normal(0, 0.08, 3)
            theta = np.arange(0.02, rng.uniform(2.3, 2.8), step / arc_r)
            r = arc_r + (r_disc - arc_r) * np.exp(-theta / 0.45)
            r = r * (1 + sum(w * np.sin((j + 2) * theta + j) for j, w in enumerate(wobble)))
            xs, ys = side * r * np.cos(theta), up * r * np.sin(theta)
            rad = rng.uniform(0.05, 0.065) * np.exp(-theta / 4.0)
            segments.extend(zip(xs, ys, rad))
            for i in np.flatnonzero(rng.random(len(theta)) < 0.9 * step):  # branches off the arcade
                if abs(xs[i]) > half_w + 1 or abs(ys[i]) > half_h + 1:
                    continue
                tangent = np.arctan2(
                    ys[min(i + 1, len(xs) - 1)] - ys[i - 1], xs[min(i + 1, len(xs) - 1)] - xs[i - 1]
                )
                inward = np.arctan2(-ys[i], -xs[i])
                target = inward if rng.random() < 0.6 else inward + np.pi
                mix = np.angle(np.exp(1j * tangent) + 1.5 * np.exp(1j * target))
                branch(xs[i], ys[i], mix, rad[i] * rng.uniform(0.45, 0.7), rng.uniform(1.0, 3.0), 1)
    for _ in range(rng.integers(2, 5)):  # small papillomacular vessels towards the fovea
        branch(
            disc_x,
            rng.normal(0, 0.4),
            np.arctan2(rng.normal(0, 0.3), -side),
            rng.uniform(0.015, 0.025),
            5.0,
            2,
        )

    if not segments:
        return np.zeros(grid.shape, np.float32)
    pts = np.asarray(segments)
    ih = np.round((pts[:, 1] - grid.y[0, 0]) / grid.px_mm).astype(int)
    iw = np.round((pts[:, 0] - grid.x[0, 0]) / grid.px_mm).astype(int)
    pad = int(np.ceil(0.2 / grid.px_mm)) + 1
    shape = (grid.shape[0] + 2 * pad, grid.shape[1] + 2 * pad)
    keep = (ih >= -pad) & (ih < grid.shape[0] + pad) & (iw >= -pad) & (iw < grid.shape[1] + pad)
    radius_img = np.zeros(shape, np.float32)
    centre = np.zeros(shape, bool)
    order = np.argsort(pts[keep, 2])  # thicker vessels written last win a shared pixel
    rr, cc, rad = ih[keep][order] + pad, iw[keep][order] + pad, pts[keep, 2][order]
    centre[rr, cc] = True
    radius_img[rr, cc] = rad
    if not centre.any():
        return np.zeros(grid.shape, np.float32)
    dist, idx = ndimage.distance_transform_edt(~centre, return_indices=True)
    r_near = radius_img[idx[0], idx[1]]
    d_mm = dist * grid.px_mm
    soft = grid.px_mm * 0.6
    vessel = 1.0 / (1.0 + np.exp((d_mm - r_near) / soft))
    return vessel[pad:-pad, pad:-pad].astype(np.float32)


@dataclass
class GALesions:
    """Per-eye GA lesion model; ``level(t)`` is a signed distance in mm (negative inside)."""

    centres: np.ndarray  # (n, 2) x, y in mm
    r0: np.ndarray  # (n,) radius at the first visit (mm)
    growth: np.ndarray  # (n,) radius growth per visit (mm)
    birth: np.ndarray  # (n,) first visit where the lesion exists
    harmonics: np.ndarray  # (n, K) amplitudes
    phases: np.ndarray  # (n, K)
    noise: np.ndarray  # fine-grid boundary noise (mm)
    rpe_loss: np.ndarray  # (n,) per-lesion OCT properties
    hyper: np.ndarray
    thinning: np.ndarray

    def level_and_owner(self, grid: FineGrid, visit: int) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (mm) to the lesion boundary at ``visit`` and the index of the nearest lesion."""
        level = np.full(grid.shape, 10.0, np.float32)
        owner = np.zeros(grid.shape, np.int64)
        k = np.arange(2, 2 + self.harmonics.shape[1])
        for i in range(len(self.r0)):
            if visit < self.birth[i]:
                continue
            dx, dy = grid.x - self.centres[i, 0], grid.y - self.centres[i, 1]
            rho, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
            shape = 1 + np.sum(
                self.harmonics[i][:, None, None]
                * np.cos(k[:, None, None] * theta + self.phases[i][:, None, None]),
                axis=0,
            )
            r = (self.r0[i] + self.growth[i] * (visit - self.birth[i])) * shape
            li = (rho - r).astype(np.float32)
            better = li < level
            level = np.where(better, li, level)
            owner = np.where(better, i, owner)
        return level + self.noise, owner


def ga_lesions(
    rng: np.random.Generator,
    grid: FineGrid,
    severity: float,
    ranges: dict[str, tuple[float, float]],
    n_visits: int,
) -> GALesions:
    """Draw one eye's GA lesions: 1–4 irregular blobs near the fovea that grow between visits."""
    n = 1 + rng.binomial(3, 0.3 + 0.2 * severity)
    ang = rng.uniform(0, 2 * np.pi, n)
    rad = np.concatenate([[rng.uniform(0.0, 1.3)], rng.uniform(0.5, 2.2, n - 1)])
    centres = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    r0 = np.concatenate([[rng.uniform(0.35, 0.8 + 0.5 * severity)], rng.uniform(0.15, 0.55, n - 1)])
    growth = rng.uniform(0.06, 0.2, n)
    birth = np.concatenate([[0], rng.choice(np.arange(max(n_visits, 1)), n - 1)]).astype(int)
    n_h = 5
    harmonics = rng.normal(0, 1, (n, n_h)) * (0.16 / np.arange(2, 2 + n_h) ** 0.7)
    phases = rng.uniform(0, 2 * np.pi, (n, n_h))
    noise = 0.07 * smooth_field(rng, grid.shape, 0.35 / grid.px_mm)

    def draw(key: str) -> np.ndarray:
        lo, hi = ranges[key]
        return rng.uniform(lo, hi, n)

    return GALesions(
        centres=centres,
        r0=r0,
        growth=growth,
        birth=birth,
        harmonics=harmonics,
        phases=phases,
        noise=noise,
        rpe_loss=draw("ga_rpe_loss"),
        hyper=draw("ga_hypertransmission"),
        thinning=draw("ga_outer_thinning"),
    )


def _nearest_point_fields(grid: FineGrid, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from every fine pixel to the nearest point, and that point's index (-1: none)."""
    ih = np.round((pts[:, 1] - grid.y[0, 0]) / grid.px_mm).astype(int)
    iw = np.round((pts[:, 0] - grid.x[0, 0]) / grid.px_mm).astype(int)
    pad = 8
    shape = (grid.shape[0] + 2 * pad, grid.shape[1] + 2 * pad)
    ok = (ih >= -pad) & (ih < grid.shape[0] + pad) & (iw >= -pad) & (iw < grid.shape[1] + pad)
    if not ok.any():
        return np.full(grid.shape, 1e3, np.float32), np.full(grid.shape, -1)
    label = np.full(shape, -1, np.int64)
    label[ih[ok] + pad, iw[ok] + pad] = np.flatnonzero(ok)
    dist, idx = ndimage.distance_transform_edt(label < 0, return_indices=True)
    nearest = label[idx[0], idx[1]]
    return (dist * grid.px_mm)[pad:-pad, pad:-pad].astype(np.float32), nearest[pad:-pad, pad:-pad]


def blobs(
    rng: np.random.Generator, grid: FineGrid, n: int, r_range: tuple[float, float], within_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` round blobs near the fovea: (profile in [0, 1] (1 − (d/r)²)₊^½, per-pixel blob index)."""
    if n == 0:
        return np.zeros(grid.shape, np.float32), np.full(grid.shape, -1)
    rho = within_mm * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * np.pi, n)
    pts = np.stack([rho * np.cos(ang), rho * np.sin(ang)], axis=1)
    radius = rng.uniform(*r_range, n)
    dist, nearest = _nearest_point_fields(grid, pts)
    r = np.where(nearest >= 0, radius[np.maximum(nearest, 0)], 0.0)
    prof = np.sqrt(np.clip(1 - (dist / np.maximum(r, 1e-6)) ** 2, 0, 1))
    return prof.astype(np.float32), nearest


def drusen_height(rng: np.random.Generator, grid: FineGrid, mean_count: float) -> np.ndarray:
    """Drusen (RPE elevations, a distractor): dome heights in mm on the fine grid."""
    n = int(rng.poisson(mean_count))
    prof, nearest = blobs(rng, grid, n, (0.06, 0.2), 2.6)
    heights = rng.uniform(0.012, 0.045, max(n, 1))
    return (prof * np.where(nearest >= 0, heights[np.maximum(nearest, 0)], 0)).astype(np.float32)


def rpd_deposits(
    rng: np.random.Generator, grid: FineGrid, height_range: tuple[float, float], n_visits: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reticular pseudodrusen per visit: (deposit height in mm, deposit footprint {0,1}) on the fine grid.

    Deposits sit on a jittered hexagonal lattice inside an elliptical region (usually superior);
    the region widens a little at each visit.
    """
    spacing = rng.uniform(0.3, 0.42)
    cx, cy = rng.uniform(-1.0, 1.0), rng.uniform(0.3, 1.8) * rng.choice((1, 1, 1, -1))
    ax, ay = rng.uniform(1.6, 3.0), rng.uniform(1.2, 2.4)
    rot = rng.uniform(0, np.pi)
    ext = max(np.abs(grid.x).max(), np.abs(grid.y).max()) + 1
    rows = np.arange(-ext, ext + spacing, spacing * np.sqrt(3) / 2)
    pts = []
    for j, yy in enumerate(rows):
        xs = np.arange(-ext, ext + spacing, spacing) + (spacing / 2 if j % 2 else 0)
        pts.append(np.stack([xs, np.full_like(xs, yy)], axis=1))
    lattice = np.concatenate(pts) + rng.normal(0, 0.2 * spacing, (sum(len(p) for p in pts), 2))
    present = rng.random(len(lattice)) < 0.8
    radius = rng.uniform(0.07, 0.12, len(lattice))
    height = rng.uniform(*height_range, len(lattice))
    c, s = np.cos(rot), np.sin(rot)
    u = ((lattice[:, 0] - cx) * c + (lattice[:, 1] - cy) * s) / ax
    v = (-(lattice[:, 0] - cx) * s + (lattice[:, 1] - cy) * c) / ay
    ell = np.hypot(u, v) + rng.normal(0, 0.08, len(lattice))
    dist, nearest = _nearest_point_fields(grid, lattice)
    out = []
    for visit in range(n_visits):
        inside = present & (ell < 1.0 + 0.12 * visit)
        r = np.where(nearest >= 0, radius[np.maximum(nearest, 0)], 0.0) * inside[np.maximum(nearest, 0)]
        foot = (dist < r).astype(np.float32)
        prof = np.sqrt(np.clip(1 - (dist / np.maximum(r, 1e-6)) ** 2, 0, 1)) * foot
        h = prof * height[np.maximum(nearest, 0)]
        out.append((h.astype(np.float32), foot))
    return out
