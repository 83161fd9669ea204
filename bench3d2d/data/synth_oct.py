"""Render a synthetic OCT volume ``(H, W, D)`` from layer surfaces and en-face lesion maps.

Each A-scan is a stack of layers (vitreous, NFL, GCL, IPL, INL, OPL, ONL, inner segments, EZ, IZ,
RPE, choroid, sclera) with a reflectivity and an attenuation coefficient. The measured intensity is
reflectivity × exp(−2 ∫ attenuation) × depth roll-off × vignetting, times multiplicative speckle,
plus a noise floor, log-compressed. GA removes RPE reflectivity and attenuation (so the choroid
brightens: hypertransmission), thins the outer layers and removes the EZ; RPD are granular material
between RPE and EZ; drusen lift the RPE; retinal vessels cast shadows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench3d2d.data.synth_enface import smooth_field

__all__ = ["OCTInputs", "render_oct"]

# Layer thicknesses (mm) away from the fovea, reflectivities and attenuation (1/mm).
T_NFL, T_GCL, T_IPL, T_INL, T_OPL = 0.02, 0.045, 0.04, 0.035, 0.03
T_ONL, T_IS, T_EZ, T_IZ, T_RPE, T_CHOROID = 0.085, 0.022, 0.018, 0.022, 0.03, 0.23
REFL = {
    "vitreous": 0.0003,
    "nfl": 0.75,
    "gcl": 0.22,
    "ipl": 0.4,
    "inl": 0.09,
    "opl": 0.35,
    "onl": 0.035,
    "is": 0.08,
    "ez": 0.7,
    "iz": 0.22,
    "rpe": 1.0,
    "drusen": 0.25,
    "rpd": 0.6,
    "choroid": 0.6,
    "sclera": 0.3,
}
DYNAMIC_RANGE_DB = 27.0  # display range of the log compression
MU = {
    "vitreous": 0.0,
    "nfl": 2.0,
    "gcl": 1.2,
    "ipl": 1.4,
    "inl": 0.8,
    "opl": 1.4,
    "onl": 0.4,
    "is": 0.6,
    "ez": 3.0,
    "iz": 2.0,
    "rpe": 30.0,
    "drusen": 2.0,
    "rpd": 4.0,
    "choroid": 3.5,
    "sclera": 2.0,
}


@dataclass
class OCTInputs:
    """Per-A-scan maps on the B-scan grid ``(H, W)`` (lengths in mm unless noted)."""

    x: np.ndarray  # en-face position (mm, fovea at 0)
    y: np.ndarray
    bm_px: np.ndarray  # Bruch's membrane depth (pixels)
    nfl_mm: np.ndarray  # nerve fibre layer thickness
    ga: np.ndarray  # GA strength in the OCT, [0, 1]
    rpe_loss: np.ndarray  # fraction of RPE reflectivity lost (already × ga)
    hyper: np.ndarray  # fraction of RPE attenuation lost (already × ga)
    thinning: np.ndarray  # fraction of ONL / inner-segment thickness lost (already × ga)
    drusen_mm: np.ndarray
    rpd_mm: np.ndarray
    vessel: np.ndarray  # [0, 1]


def _coverage(z: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Fraction of each depth pixel [z − ½, z + ½) inside the layer [top, bottom) (pixels)."""
    return np.clip(np.minimum(z + 0.5, bottom[..., None]) - np.maximum(z - 0.5, top[..., None]), 0.0, 1.0)


def render_oct(
    inp: OCTInputs,
    depth: int,
    d_mm: float,
    rng: np.random.Generator,
    speckle: float,
    noise_floor: float,
    vignetting: float,
    vessel_shadow: float,
    rows_per_chunk: int = 8,
) -> np.ndarray:
    """The OCT volume ``(H, W, depth)`` float32, log-compressed to about [0, 1]."""
    H, W = inp.bm_px.shape
    px = 1.0 / d_mm  # pixels per mm
    r2 = inp.x**2 + inp.y**2
    pit = np.exp(-r2 / (2 * 0.42**2))  # foveal pit: inner layers vanish at the centre
    ring = np.exp(-((np.sqrt(r2) - 1.1) ** 2) / (2 * 0.45**2))  # thicker parafoveal ganglion cells
    keep = 1 - inp.thinning
    # surfaces from BM upwards (pixels, depth increases downwards)
    bm = inp.bm_px
    drusen_top = bm - inp.drusen_mm * px
    rpe_top = drusen_top - T_RPE * px
    rpd_top = rpe_top - inp.rpd_mm * px
    iz_top = rpd_top - T_IZ * px * keep
    ez_top = iz_top - T_EZ * px * keep
    is_top = ez_top - T_IS * px * keep
    onl_top = is_top - (T_ONL + 0.035 * pit) * px * np.maximum(keep, 0.25)
    opl_top = onl_top - T_OPL * px * (1 - 0.6 * pit)
    inl_top = opl_top - T_INL * px * (1 - 0.92 * pit)
    ipl_top = inl_top - T_IPL * px * (1 - 0.95 * pit)
    gcl_top = ipl_top - T_GCL * px * (1 - 0.97 * pit) * (1 + 0.35 * ring)
    ilm = gcl_top - inp.nfl_mm * px
    chor_bot = bm + T_CHOROID * px * (1 + 0.15 * smooth_field(rng, (H, W), max(W, H) / 3))
    far = np.full_like(bm, 1e6)
    vessel_top = gcl_top - 0.5 * inp.nfl_mm * px
    ez_refl = REFL["ez"] * (1 - inp.ga) * (1 - np.clip(inp.rpd_mm / 0.02, 0, 0.8))
    # float32 copies of the float64 surfaces (the names are rebound on purpose)
    ilm, gcl_top, ipl_top, inl_top, opl_top, onl_top, is_top, ez_top, iz_top, rpd_top, rpe_top = (  # type: ignore[assignment]
        a.astype(np.float32)
        for a in (ilm, gcl_top, ipl_top, inl_top, opl_top, onl_top, is_top, ez_top, iz_top, rpd_top, rpe_top)
    )
    drusen_top, bm, chor_bot, far = (a.astype(np.float32) for a in (drusen_top, bm, chor_bot, far))  # type: ignore[assignment]
    layers: list[
        tuple[str, np.ndarray, np.ndarray, Any, Any]
    ] = [  # name, top, bottom, reflectivity (scalar or (H, W)), attenuation (scalar or (H, W))
        ("nfl", ilm, gcl_top, REFL["nfl"], MU["nfl"]),
        ("gcl", gcl_top, ipl_top, REFL["gcl"], MU["gcl"]),
        ("ipl", ipl_top, inl_top, REFL["ipl"], MU["ipl"]),
        ("inl", inl_top, opl_top, REFL["inl"], MU["inl"]),
        ("opl", opl_top, onl_top, REFL["opl"], MU["opl"]),
        ("onl", onl_top, is_top, REFL["onl"], MU["onl"]),
        ("is", is_top, ez_top, REFL["is"], MU["is"]),
        ("ez", ez_top, iz_top, ez_refl, MU["ez"]),
        ("iz", iz_top, rpd_top, REFL["iz"] * (1 - inp.ga), MU["iz"]),
        ("rpd", rpd_top, rpe_top, REFL["rpd"], MU["rpd"]),
        ("rpe", rpe_top, drusen_top, REFL["rpe"] * (1 - inp.rpe_loss), MU["rpe"] * (1 - inp.hyper)),
        ("drusen", drusen_top, bm, REFL["drusen"], MU["drusen"]),
        ("choroid", bm, chor_bot, REFL["choroid"], MU["choroid"]),
        ("sclera", chor_bot, far, REFL["sclera"], MU["sclera"]),
    ]
    # choroidal vessels: dark lumens from a 3-D random field, drawn once per volume
    chor_tex = np.clip(1.0 + 0.55 * smooth_field(rng, (H, W, depth), max(2.0, 0.06 * px)), 0.15, 2.0)
    rho2 = (inp.x - inp.x.mean()) ** 2 / max(np.ptp(inp.x) / 2, 1e-6) ** 2 + (
        inp.y - inp.y.mean()
    ) ** 2 / max(np.ptp(inp.y) / 2, 1e-6) ** 2
    gain = (1 - vignetting * 0.5 * rho2) * (
        1 + 0.06 * rng.standard_normal((H, 1))
    )  # vignetting, B-scan jitter
    z = np.arange(depth, dtype=np.float32)
    rolloff = np.exp(-z * d_mm / 2.5)
    k = 1.0 / max(speckle, 1e-3) ** 2  # gamma shape: speckle 1 = fully developed
    out = np.empty((H, W, depth), np.float32)
    for h0 in range(0, H, rows_per_chunk):
        sl = slice(h0, min(H, h0 + rows_per_chunk))
        refl = np.zeros((sl.stop - sl.start, W, depth), np.float32)
        mu = np.zeros_like(refl)
        for name, top, bottom, r, m in layers:
            cov = _coverage(z, top[sl], bottom[sl])
            r_arr = r[sl][..., None] if isinstance(r, np.ndarray) else r
            m_arr = m[sl][..., None] if isinstance(m, np.ndarray) else m
            if name == "choroid":
                r_arr = r_arr * chor_tex[sl]
            refl += cov * r_arr
            mu += cov * m_arr
        refl += _coverage(z, np.zeros_like(ilm[sl]), ilm[sl]) * REFL["vitreous"]
        # retinal vessels: bright in the inner retina, attenuating what lies below (shadows)
        vcov = _coverage(z, vessel_top[sl], vessel_top[sl] + 0.06 * px) * inp.vessel[sl][..., None]
        refl += vcov * 0.5
        mu += vcov * 25.0 * vessel_shadow
        optical = (np.cumsum(mu, axis=2) - 0.5 * mu) * d_mm
        intensity = refl * np.exp(-2 * optical) * rolloff * gain[sl][..., None]
        if speckle > 0:
            intensity *= rng.standard_gamma(k, intensity.shape, dtype=np.float32) / np.float32(k)
        intensity += np.float32(noise_floor * 0.03) * rng.standard_exponential(
            intensity.shape, dtype=np.float32
        )
        out[sl] = np.clip((10 * np.log10(intensity + 1e-5) + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    return out
