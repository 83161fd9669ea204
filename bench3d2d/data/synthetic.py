"""Synthetic cohorts after the paper's datasets (Table 1): ``synthetic-ga-m``, ``synthetic-ga-s``,
``synthetic-rpd`` and the test-set views ``synthetic-ga-m-s``, ``synthetic-ga-s-1``, ``synthetic-ga-s-2``.

Deterministic per seed: every eye draws from its own generator seeded by (seed, family, patient,
eye), so any scan can be produced alone (datasets are lazy) and views of one cohort agree on
patient ids. Difficulty is the ``Difficulty`` dataclass (docs/data.md lists every knob); pass
``difficulty={...}`` to ``load_dataset`` to change it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from bench3d2d.data.preprocess import area_resample
from bench3d2d.data.records import DataError, Dataset, Scan, ScanRef
from bench3d2d.data.registry import register_dataset
from bench3d2d.data.synth_enface import (
    FineGrid,
    blobs,
    drusen_height,
    ga_lesions,
    rpd_deposits,
    smooth_field,
    vessel_tree,
)
from bench3d2d.data.synth_oct import OCTInputs, render_oct

__all__ = ["GENERATOR_VERSION", "PRESETS", "Difficulty", "Preset", "generate_eye", "synthetic_dataset"]

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Difficulty:
    """How visible lesions are in each modality, how noisy the images are, and the distractors.

    Ranges ``(lo, hi)`` are drawn uniformly per lesion. Defaults are set so that the FAF reveals GA
    strongly, the SLO weakly and both reveal RPD only weakly (tests/test_data_synthetic.py).
    """

    # GA in the OCT
    ga_rpe_loss: tuple[float, float] = (0.5, 0.95)  # fraction of RPE reflectivity lost inside GA
    ga_hypertransmission: tuple[float, float] = (
        0.3,
        0.95,
    )  # fraction of RPE attenuation lost (choroid brightens)
    ga_outer_thinning: tuple[float, float] = (0.3, 0.8)  # fraction of ONL / photoreceptor thickness lost
    ga_oct_patchiness: float = (
        0.35  # spatial variation of the OCT signature inside a lesion (partial lesions)
    )
    ga_boundary_mm: float = 0.08  # width of the soft OCT transition at the lesion border
    # GA in the 2-D modalities
    faf_ga_contrast: float = 0.75  # FAF darkening inside GA (0 invisible, 1 black)
    faf_rim: float = 0.35  # hyperautofluorescent junctional rim (patchy)
    slo_ga_contrast: float = 0.12  # SLO brightening inside GA
    # RPD
    rpd_height_mm: tuple[float, float] = (0.02, 0.045)  # deposit height between RPE and EZ
    rpd_faf_contrast: float = 0.12  # FAF darkening at a deposit
    rpd_slo_contrast: float = 0.14  # SLO dark rim around a deposit (centre iso-reflective)
    # noise and acquisition
    speckle: float = 0.6  # multiplicative speckle, 0 none, 1 fully developed (gamma shape 1/speckle²)
    noise_floor: float = 0.04  # additive OCT noise floor
    vignetting: float = 0.3  # en-face signal loss towards the corners (OCT, SLO, FAF)
    faf_noise: float = 0.08  # additive pixel noise SD of the FAF (native grid, before resampling)
    slo_noise: float = 0.08  # additive pixel noise SD of the SLO (native grid)
    gain_jitter: float = 0.08  # SD of a per-image gain factor of SLO and FAF
    # distractors
    drusen: float = 6.0  # mean number of drusen per eye (RPE elevations; SLO slightly brighter)
    vessel_shadow: float = 0.6  # strength of the shadows retinal vessels cast in the OCT
    faf_dark_spots: float = 3.0  # mean number of dark FAF spots that are not GA, per eye
    faf_spot_contrast: float = 0.45  # their darkening
    # second rater
    rater2_boundary_mm: float = 0.06  # SD of the second rater's boundary displacement

    @classmethod
    def from_options(cls, options: dict | None) -> Difficulty:
        """Defaults updated by a dict; unknown keys are an error listing the knobs."""
        if not options:
            return cls()
        names = {f.name for f in fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise ValueError(
                f"unknown difficulty knob(s) {sorted(unknown)}; known: {', '.join(sorted(names))}"
            )
        conv: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return replace(cls(), **conv)


@dataclass(frozen=True)
class Preset:
    """Cohort size and acquisition geometry of one dataset family at one size preset."""

    n_patients: int
    shape: tuple[int, int, int]  # raw (H, W, D)
    extent_mm: tuple[float, float, float]  # field (h, w) and depth window (d)
    visit_probs: tuple[float, float, float] = (0.6, 0.3, 0.1)  # P(1, 2, 3 visits) per eye
    p_both_eyes: float = 1.0
    annotated_patients: int = 0  # GA-M: patients with masks (GA-M-S)
    two_rater_fraction: float = 0.0  # GA-S: share of patients with a second rater (GA-S-2)
    lesion: str = "ga"  # "ga" or "rpd"

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(e / s for e, s in zip(self.extent_mm, self.shape))  # type: ignore[return-value]


PRESETS: dict[str, dict[str, Preset]] = {
    "ga-m": {
        "quick": Preset(125, (16, 64, 96), (6.68, 6.68, 1.5), annotated_patients=5),
        "paper": Preset(100, (49, 1024, 496), (6.68, 6.68, 1.92), annotated_patients=12),
    },
    "ga-s": {
        # 42 patients: GA-S-1 keeps 34, so its training split has 20 patients and the label
        # fractions 5 / 10 / 20 / 100 % select 1 / 2 / 4 / 20 distinct patients (docs/protocol.md §9).
        "quick": Preset(42, (16, 64, 96), (6.02, 6.03, 1.5), (0.7, 0.25, 0.05), two_rater_fraction=0.2),
        "paper": Preset(149, (49, 512, 496), (6.02, 6.03, 1.92), two_rater_fraction=0.3),
    },
    "rpd": {
        "quick": Preset(20, (32, 64, 96), (5.73, 5.72, 1.5), (0.85, 0.15, 0.0), 0.2, lesion="rpd"),
        "paper": Preset(19, (97, 1024, 496), (5.73, 5.72, 1.92), (0.85, 0.15, 0.0), 0.2, lesion="rpd"),
    },
}
FAMILY_CODE = {"ga-m": 1, "ga-s": 2, "rpd": 3}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _fine_width(W: int) -> int:
    return int(np.clip(2 * W, 128, 1024))


@dataclass
class _EyeFields:
    """What one eye keeps across its visits: geometry, textures, distractors and lesion growth."""

    preset: Preset
    fovea: tuple[float, float]
    grid: FineGrid
    bx: np.ndarray  # B-scan grid pixel centres (mm), (H, W)
    by: np.ndarray
    vessels: np.ndarray  # fine-grid maps from here to rim_patch
    drusen: np.ndarray
    spots: np.ndarray
    faf_tex: np.ndarray
    slo_tex: np.ndarray
    patchy: np.ndarray
    rim_patch: np.ndarray
    r2_field: np.ndarray
    r2_bias: float
    nfl: np.ndarray  # B-scan grid
    sag: float
    wave: np.ndarray  # B-scan grid
    lesions: Any  # GA lesions (``ga_lesions``) or RPD deposits per visit (``rpd_deposits``)

    def to_grid(self, fine: np.ndarray) -> np.ndarray:
        """A fine-grid map area-averaged onto the B-scan grid."""
        return area_resample(fine, hw=self.preset.shape[:2])


@dataclass
class _LesionMaps:
    """One visit's lesion signatures: OCT inputs on the B-scan grid, en-face maps on the fine grid."""

    ga_oct: np.ndarray
    rpe_loss: np.ndarray
    hyper: np.ndarray
    thin: np.ndarray
    rpd_h: np.ndarray
    faf_ga: np.ndarray
    slo_ga: np.ndarray
    rim: np.ndarray
    rpd_dot: np.ndarray
    rpd_ring: np.ndarray
    mask_fine: np.ndarray
    mask2_fine: np.ndarray | None


def _eye_fields(
    rng: np.random.Generator, preset: Preset, eye: str, n_visits: int, diff: Difficulty
) -> _EyeFields:
    """Draw the per-eye fields from the eye's generator (the order of the draws fixes the cohort)."""
    H, W, _D = preset.shape
    h_mm, w_mm, _d_mm = preset.spacing_mm
    ext_h, ext_w, _ext_d = preset.extent_mm
    fovea = tuple(rng.normal(0, 0.15, 2))
    grid = FineGrid.make((ext_h, ext_w), _fine_width(W), fovea)
    disc_x = (1 if eye == "OD" else -1) * rng.uniform(4.0, 4.6)
    # B-scan grid coordinates (pixel centres) in the same frame
    bx = ((np.arange(W) + 0.5) * w_mm - ext_w / 2 - fovea[0])[None, :].repeat(H, 0)
    by = ((np.arange(H) + 0.5) * h_mm - ext_h / 2 - fovea[1])[:, None].repeat(W, 1)

    severity = rng.uniform(0, 1)
    vessels = vessel_tree(rng, grid, disc_x)
    drusen = drusen_height(rng, grid, diff.drusen)
    spots, _ = blobs(rng, grid, int(rng.poisson(diff.faf_dark_spots)), (0.08, 0.25), 2.8)
    spots = spots * rng.uniform(0.6, 1.0)
    faf_tex = smooth_field(rng, grid.shape, 0.8 / grid.px_mm)
    slo_tex = smooth_field(rng, grid.shape, 0.8 / grid.px_mm)
    patchy = _sigmoid(1.5 * smooth_field(rng, grid.shape, 0.5 / grid.px_mm))  # in (0, 1), ~0.5
    rim_patch = _sigmoid(2.0 * smooth_field(rng, grid.shape, 0.4 / grid.px_mm))
    r2_field = smooth_field(rng, grid.shape, 0.5 / grid.px_mm)
    r2_bias = rng.normal(0, 0.3 * diff.rater2_boundary_mm)
    nfl = 0.015 + 0.03 * np.exp(-((bx - disc_x) ** 2 + by**2) / (2 * 2.2**2))  # thicker towards the disc
    # retina shape: bowl (deepest at the fovea), tilt, smooth waviness; per eye
    sag = rng.uniform(0.1, 0.28) / 9.0
    wave = 0.02 * smooth_field(rng, (H, W), W / 2)
    lesions: Any  # GALesions, or the RPD deposits of each visit
    if preset.lesion == "ga":
        knobs = {k: getattr(diff, k) for k in ("ga_rpe_loss", "ga_hypertransmission", "ga_outer_thinning")}
        lesions = ga_lesions(rng, grid, severity, knobs, n_visits)
    else:
        lesions = rpd_deposits(rng, grid, diff.rpd_height_mm, n_visits)
    return _EyeFields(
        preset=preset, fovea=fovea, grid=grid, bx=bx, by=by, vessels=vessels, drusen=drusen, spots=spots,
        faf_tex=faf_tex, slo_tex=slo_tex, patchy=patchy, rim_patch=rim_patch, r2_field=r2_field,
        r2_bias=r2_bias, nfl=nfl, sag=sag, wave=wave, lesions=lesions,
    )  # fmt: skip


def _lesion_maps(e: _EyeFields, v: int, diff: Difficulty, rater2: bool) -> _LesionMaps:
    """GA (signed distance to the boundary, soft OCT signature, FAF/SLO maps) or RPD at visit ``v``."""
    grid = e.grid
    zeros = np.zeros(e.preset.shape[:2], np.float32)
    fine_zeros = np.zeros(grid.shape, np.float32)
    maps = _LesionMaps(
        ga_oct=zeros, rpe_loss=zeros, hyper=zeros, thin=zeros, rpd_h=zeros,
        faf_ga=fine_zeros, slo_ga=fine_zeros, rim=fine_zeros, rpd_dot=fine_zeros, rpd_ring=fine_zeros,
        mask_fine=fine_zeros, mask2_fine=None,
    )  # fmt: skip
    if e.preset.lesion == "ga":
        level, owner = e.lesions.level_and_owner(grid, v)
        maps.mask_fine = (level < 0).astype(np.float32)
        if rater2:
            maps.mask2_fine = (level + diff.rater2_boundary_mm * e.r2_field + e.r2_bias < 0).astype(
                np.float32
            )
        s_oct = _sigmoid(-level / max(diff.ga_boundary_mm / 4, 1e-4)) * (
            1 - diff.ga_oct_patchiness * e.patchy
        )
        maps.ga_oct = e.to_grid(s_oct)
        maps.rpe_loss = e.to_grid(s_oct * e.lesions.rpe_loss[owner])
        maps.hyper = e.to_grid(s_oct * e.lesions.hyper[owner])
        s_thin = _sigmoid(-level / max(diff.ga_boundary_mm, 1e-4)) * (1 - diff.ga_oct_patchiness * e.patchy)
        maps.thin = e.to_grid(s_thin * e.lesions.thinning[owner])  # outer layers thin over a wider transition
        maps.faf_ga = _sigmoid(-level / 0.015)
        maps.slo_ga = _sigmoid(-level / 0.04) * (0.6 + 0.8 * e.patchy)
        maps.rim = np.exp(-np.maximum(level, 0) / 0.08) * (level > -0.02) * (0.3 + 1.4 * e.rim_patch)
    else:
        height, foot = e.lesions[v]
        maps.mask_fine = foot
        maps.rpd_h = e.to_grid(height)
        maps.rpd_dot = foot
        near = ndimage_distance(foot, grid.px_mm)
        maps.rpd_ring = np.exp(-((near - 0.04) ** 2) / (2 * 0.025**2)) * (foot == 0)
    return maps


def _enface(
    e: _EyeFields, m: _LesionMaps, diff: Difficulty, vr: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """FAF and SLO on the fine grid, then area-averaged to the B-scan grid and clipped to [0, 1]."""
    grid, fovea = e.grid, e.fovea
    ext_h, ext_w, _ext_d = e.preset.extent_mm
    rho2 = ((grid.x + fovea[0]) / (ext_w / 2)) ** 2 + ((grid.y + fovea[1]) / (ext_h / 2)) ** 2
    vig = 1 - diff.vignetting * 0.5 * rho2
    macular = np.exp(-(grid.x**2 + grid.y**2) / (2 * 0.5**2))
    faf = 0.55 * (1 + 0.07 * e.faf_tex) * (1 - 0.4 * macular) * (1 - 0.55 * e.vessels)
    faf = faf * (1 - diff.faf_ga_contrast * m.faf_ga) + 0.55 * diff.faf_rim * m.rim * (1 - m.faf_ga)
    faf = faf * (1 - diff.faf_spot_contrast * e.spots) * (1 - diff.rpd_faf_contrast * m.rpd_dot)
    faf = faf * (1 + 0.6 * e.drusen) * vig * (1 + diff.gain_jitter * vr.standard_normal())
    slo = 0.5 * (1 + 0.08 * e.slo_tex) * (1 - 0.12 * macular) * (1 - 0.45 * e.vessels)
    slo = slo + 0.5 * diff.slo_ga_contrast * m.slo_ga - 0.5 * diff.rpd_slo_contrast * 2.0 * m.rpd_ring
    slo = (slo + 1.5 * e.drusen) * vig * (1 + diff.gain_jitter * vr.standard_normal())
    faf_b = np.clip(e.to_grid(faf + diff.faf_noise * vr.standard_normal(grid.shape)), 0, 1)
    slo_b = np.clip(e.to_grid(slo + diff.slo_noise * vr.standard_normal(grid.shape)), 0, 1)
    return faf_b, slo_b


def _render_visit(e: _EyeFields, v: int, vr: np.random.Generator, diff: Difficulty, rater2: bool) -> dict:
    """One visit: the OCT volume, FAF, SLO, masks on the B-scan grid, BM row and lesion area."""
    preset = e.preset
    _H, _W, D = preset.shape
    h_mm, w_mm, d_mm = preset.spacing_mm
    bx, by = e.bx, e.by
    tilt = vr.normal(0, 0.035, 2)
    bm_mm = preset.extent_mm[2] * 0.62 - e.sag * (bx**2 + by**2) + tilt[0] * bx + tilt[1] * by + e.wave
    bm_px = bm_mm / d_mm
    m = _lesion_maps(e, v, diff, rater2)
    inputs = OCTInputs(
        x=bx,
        y=by,
        bm_px=bm_px,
        nfl_mm=e.nfl,
        ga=m.ga_oct,
        rpe_loss=m.rpe_loss,
        hyper=m.hyper,
        thinning=m.thin,
        drusen_mm=e.to_grid(e.drusen),
        rpd_mm=m.rpd_h,
        vessel=e.to_grid(e.vessels),
    )
    volume = render_oct(
        inputs, D, d_mm, vr, diff.speckle, diff.noise_floor, diff.vignetting, diff.vessel_shadow
    )
    faf_b, slo_b = _enface(e, m, diff, vr)
    mask = (e.to_grid(m.mask_fine) >= 0.5).astype(np.uint8)
    mask2 = None if m.mask2_fine is None else (e.to_grid(m.mask2_fine) >= 0.5).astype(np.uint8)
    return {
        "volume": volume,
        "slo": slo_b.astype(np.float32),
        "faf": faf_b.astype(np.float32),
        "mask": mask,
        "rater2": mask2,
        "bm": (bm_px - 0.5).astype(np.float32),  # pixel index of the BM row (surface at the RPE base)
        "lesion_area_mm2": float(mask.sum() * h_mm * w_mm),
    }


def generate_eye(
    family: str, size: str, seed: int, patient: int, eye: str, n_visits: int, diff: Difficulty, rater2: bool
) -> list[dict]:
    """All visits of one eye: dicts with volume, slo, faf, mask, rater2 mask, BM surface, meta."""
    preset = PRESETS[family][size]
    eye_code = 0 if eye == "OD" else 1
    rng = np.random.default_rng([seed, FAMILY_CODE[family], patient, eye_code])
    fields_ = _eye_fields(rng, preset, eye, n_visits, diff)
    visits = []
    for v in range(n_visits):
        vr = np.random.default_rng([seed, FAMILY_CODE[family], patient, eye_code, 100 + v])
        visits.append(_render_visit(fields_, v, vr, diff, rater2))
    return visits


def ndimage_distance(foot: np.ndarray, px_mm: float) -> np.ndarray:
    """Distance (mm) from each pixel outside a footprint to the footprint."""
    from scipy import ndimage

    if not foot.any():
        return np.full(foot.shape, 1e3, np.float32)
    return (ndimage.distance_transform_edt(foot == 0) * px_mm).astype(np.float32)


# --------------------------------------------------------------------------------------------
# cohorts and registered datasets


@dataclass(frozen=True)
class _EyePlan:
    patient: int
    patient_id: str
    eye: str
    n_visits: int
    annotated: bool
    raters: int


def _plan(family: str, size: str, seed: int, n_patients: int) -> list[_EyePlan]:
    """Which patients, eyes, visits, annotation and rater groups the cohort has (cheap, no images)."""
    preset = PRESETS[family][size]
    code = FAMILY_CODE[family]
    cohort = np.random.default_rng([seed, code, 10**6])
    annotated = set(cohort.choice(n_patients, size=min(preset.annotated_patients, n_patients), replace=False))
    n_two = round(preset.two_rater_fraction * n_patients)
    two = set(cohort.choice(n_patients, size=n_two, replace=False)) if n_two else set()
    plans = []
    prefix = {"ga-m": "gam", "ga-s": "gas", "rpd": "rpd"}[family]
    for p in range(n_patients):
        prng = np.random.default_rng([seed, code, p, 10**6])
        eyes = ["OD", "OS"] if prng.random() < preset.p_both_eyes else ["OD" if prng.random() < 0.5 else "OS"]
        for eye in eyes:
            n_visits = int(prng.choice([1, 2, 3], p=np.asarray(preset.visit_probs) / sum(preset.visit_probs)))
            plans.append(
                _EyePlan(
                    patient=p,
                    patient_id=f"{prefix}-p{p:03d}",
                    eye=eye,
                    n_visits=n_visits,
                    annotated=family != "ga-m" or p in annotated,
                    raters=2 if p in two else 1,
                )
            )
    return plans


@functools.lru_cache(maxsize=2)
def _eye_cached(
    family: str, size: str, seed: int, patient: int, eye: str, n_visits: int, diff_json: str, rater2: bool
):
    diff = Difficulty.from_options(json.loads(diff_json))
    visits = generate_eye(family, size, seed, patient, eye, n_visits, diff, rater2)
    for v in visits:  # cached arrays are shared by the scans handed out: make them read-only
        for arr in v.values():
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False
    return visits


def _make_scan(
    family: str, size: str, seed: int, plan: _EyePlan, visit: int, diff_json: str, meta: dict
) -> Scan:
    visits = _eye_cached(
        family, size, seed, plan.patient, plan.eye, plan.n_visits, diff_json, plan.raters == 2
    )
    d = visits[visit - 1]
    extra = {"rater2": d["rater2"]} if plan.raters == 2 and d["rater2"] is not None else {}
    return Scan(
        scan_id=f"{plan.patient_id}-{plan.eye}-v{visit}",
        patient_id=plan.patient_id,
        eye=plan.eye,
        visit=visit,
        volume=d["volume"],
        spacing_mm=PRESETS[family][size].spacing_mm,
        slo=d["slo"],
        faf=d["faf"],
        mask=d["mask"] if plan.annotated else None,
        extra_masks=extra if plan.annotated else {},
        bm_surface=d["bm"],
        meta={**meta, "lesion_area_mm2": d["lesion_area_mm2"] if plan.annotated else None},
    )


def synthetic_dataset(
    family: str,
    view: str,
    size: str = "quick",
    seed: int = 0,
    difficulty: dict | None = None,
    n_patients: int | None = None,
) -> Dataset:
    """A lazy synthetic dataset: ``family`` in ga-m, ga-s, rpd; ``view`` selects patients / labels.

    Views: ``all``; ``annotated`` (GA-M-S); ``one-rater`` (GA-S-1); ``two-raters`` (GA-S-2).
    """
    if family not in PRESETS:
        raise LookupError(f"unknown synthetic family {family!r}")
    if size not in PRESETS[family]:
        raise ValueError(f"unknown size preset {size!r} (choose from {', '.join(PRESETS[family])})")
    preset = PRESETS[family][size]
    diff = Difficulty.from_options(difficulty)
    diff_json = json.dumps(asdict(diff), sort_keys=True)
    n = int(n_patients or preset.n_patients)
    if n < 1:
        raise DataError(f"synthetic-{family}: n_patients must be at least 1, got {n}")
    preset_json = json.dumps(asdict(preset), sort_keys=True)  # a changed preset is other data
    opts = hashlib.sha256(f"{diff_json}|{n}|{preset_json}".encode()).hexdigest()[:10]
    namespace = f"synthetic-{family}_{size}_s{seed}_v{GENERATOR_VERSION}_{opts}"
    items = []
    for plan in _plan(family, size, seed, n):
        if view == "annotated" and not plan.annotated:
            continue
        if view == "one-rater" and plan.raters != 1:
            continue
        if view == "two-raters" and plan.raters != 2:
            continue
        for visit in range(1, plan.n_visits + 1):
            meta = {
                "source": "synthetic",
                "family": family,
                "size": size,
                "seed": seed,
                "annotated": plan.annotated,
                "raters": plan.raters if plan.annotated else 0,
                "lesion": preset.lesion,
            }
            items.append(
                ScanRef(
                    scan_id=f"{plan.patient_id}-{plan.eye}-v{visit}",
                    patient_id=plan.patient_id,
                    eye=plan.eye,
                    visit=visit,
                    loader=functools.partial(_make_scan, family, size, seed, plan, visit, diff_json, meta),
                    meta=meta,
                    where=f"synthetic-{family} {plan.patient_id} {plan.eye} visit {visit}",
                )
            )
    name = {
        "all": f"synthetic-{family}",
        "annotated": "synthetic-ga-m-s",
        "one-rater": "synthetic-ga-s-1",
        "two-raters": "synthetic-ga-s-2",
    }[view]
    info = {
        "family": family,
        "view": view,
        "size": size,
        "seed": seed,
        "difficulty": asdict(diff),
        "shape": list(preset.shape),
        "spacing_mm": list(preset.spacing_mm),
        "lesion": preset.lesion,
    }
    return Dataset(name, items, namespace=namespace, info=info)


@register_dataset(
    "synthetic-ga-m", task="ga", tags=("synthetic", "pretraining"), pretrain_exclude=("synthetic-ga-m-s",)
)
def synthetic_ga_m(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """GA, many scans with SLO and FAF; masks only on the GA-M-S patients (meta["annotated"])."""
    return synthetic_dataset("ga-m", "all", size, seed, **options)


@register_dataset("synthetic-ga-m-s", task="ga", tags=("synthetic", "test"))
def synthetic_ga_m_s(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """The annotated GA-M patients (a test set; exclude them from pre-training)."""
    return synthetic_dataset("ga-m", "annotated", size, seed, **options)


@register_dataset("synthetic-ga-s", task="ga", tags=("synthetic",), pretrain_source="synthetic-ga-m")
def synthetic_ga_s(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """Annotated GA; part of the patients with a second rater (extra_masks["rater2"])."""
    return synthetic_dataset("ga-s", "all", size, seed, **options)


@register_dataset(
    "synthetic-ga-s-1", task="ga", tags=("synthetic", "train"), pretrain_source="synthetic-ga-m"
)
def synthetic_ga_s_1(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """GA-S patients with one rater (train / val / test split source)."""
    return synthetic_dataset("ga-s", "one-rater", size, seed, **options)


@register_dataset("synthetic-ga-s-2", task="ga", tags=("synthetic", "test"), pretrain_source="synthetic-ga-m")
def synthetic_ga_s_2(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """GA-S patients with two raters: mask = rater 1, extra_masks["rater2"] (a test set)."""
    return synthetic_dataset("ga-s", "two-raters", size, seed, **options)


@register_dataset("synthetic-rpd", task="rpd", tags=("synthetic",), pretrain_source="synthetic-ga-m")
def synthetic_rpd(size: str = "quick", seed: int = 0, **options) -> Dataset:
    """Annotated RPD, few scans (mostly one eye and one visit per patient)."""
    return synthetic_dataset("rpd", "all", size, seed, **options)
