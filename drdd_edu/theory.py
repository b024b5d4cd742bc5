"""How much noise? The DRDD optimal-noise objective, and a Gaussian model of it.

DRDD (§4.5, App. A.5) trades *harmonisation* against *corruption*:

    A(σ) = MMD(P_s^σ, P_t^σ)    noisy source (degraded) vs noisy target (clean) — falls with σ
    B(σ) = MMD(P_s^σ, P_s)      noisy source vs clean source             — rises with σ
    J(σ; λ) = λ·Ã(σ) + (1 − λ)·B̃(σ),   σ* = argmin_σ J,                              (T1)

with Ã, B̃ min-max normalised over the σ grid, RBF-kernel MMD, each averaged over R draws.
The paper reports σ* ≈ 1.1–1.2 (λ = 0.5, All-in-One-5) but leaves open the kernel bandwidth,
the feature space, R, the grid and whether "MMD" means MMD² or its square root;
:func:`noise_objective` makes each an explicit argument (``statistic="mmd2"`` by default).

**Why the statistic matters: the high-dimension model.** For an RBF kernel of bandwidth h in D
dimensions and isotropic noise, E_n exp(−‖δ + n‖²/(2h²)) = (1 + τ)^{−D/2}·exp(−‖δ‖²/(2h²(1 + τ)))
with τ = 2σ_f²/h² when both points are noisy (n ~ N(0, 2σ_f² I)) and τ = σ_f²/h² when one is.
When D is large and D·σ_f²/h² = O(1) (the median heuristic gives h² ≈ 2·D·v̄), the exponent's
change is O(1/D): every noisy–noisy kernel term is multiplied by one *common* factor
c(σ) = (1 + 2σ_f²/h²)^{−D/2} (:func:`noise_kernel_factor`), every noisy–clean term by
(1 + σ_f²/h²)^{−D/2} = √c·(1 + O(D σ_f⁴/h⁴)), clean–clean terms by 1. With u = √c(σ):

    MMD²(P_s^σ, P_t^σ) = u²·MMD²(P_s, P_t),   MMD²(P_s^σ, P_s) = K̄_ss·(1 − u)²             (T3)

(K̄_ss = E k(x, x′), x, x′ ~ P_s independent). With the square root, A ∝ u and B ∝ 1 − u, so
Ã + B̃ = 1 and J(σ; ½) ≡ ½: flat, σ* is noise. With MMD², A ∝ u², B ∝ (1 − u)², and with U = u at
the grid's end, dJ/du = 0 gives u* = (1 − λ)(1 + U)/(1 + U − 2λU), i.e. u* = (1 + U)/2 at λ = ½
(:func:`mmd2_minimiser`).

:func:`gaussian_objective` is a closed-form model of the same trade-off. Assumptions: in
feature space (dimension D) each domain is an isotropic Gaussian N(μ_k, s_k²·I); noise adds
σ²·I to every covariance (exact for pixel features, where features are the noisy pixels);
the kernel bandwidth h is fixed. Then (Gretton et al. 2012, Gaussian-kernel expectations)

    E k(x, y) = (h² / (h² + s_x² + s_y²))^{D/2} · exp(−‖μ_x − μ_y‖² / (2(h² + s_x² + s_y²)))   (T2)

for independent x ~ N(μ_x, s_x² I), y ~ N(μ_y, s_y² I), and MMD² = E k(x,x′) + E k(y,y′) − 2 E k(x,y).
Proposition 3.1 (noise shrinks the KL divergence) is checked by :func:`kl_isotropic_gaussians`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .harmonize import FeatureExtractor, PixelFeatures, features_at_noise
from .metrics import median_bandwidth, mmd2

__all__ = [
    "STATISTICS",
    "ObjectiveCurves",
    "minmax",
    "objective_from_curves",
    "noise_objective",
    "bootstrap_sigma_star",
    "noise_kernel_factor",
    "common_factor_curves",
    "mmd2_minimiser",
    "GaussianStats",
    "gaussian_stats",
    "gaussian_mmd2",
    "gaussian_objective",
    "kl_isotropic_gaussians",
]


@dataclass
class ObjectiveCurves:
    """A(σ), B(σ), their normalised forms and J(σ; λ) on a σ grid (all shape (S,)).

    ``sigma_star`` is the grid point minimising J; ``choices`` records the open choices
    (bandwidth, features, R) so a figure can state them.
    """

    sigmas: np.ndarray
    A: np.ndarray
    B: np.ndarray
    A_norm: np.ndarray
    B_norm: np.ndarray
    J: np.ndarray
    lam: float
    sigma_star: float
    choices: dict


def minmax(v: np.ndarray) -> np.ndarray:
    """(v − min v)/(max v − min v); a constant curve maps to zeros."""
    v = np.asarray(v, dtype=float)
    span = v.max() - v.min()
    return np.zeros_like(v) if span <= 0 else (v - v.min()) / span


def objective_from_curves(
    sigmas: Sequence[float],
    A: Sequence[float],
    B: Sequence[float],
    lam: float = 0.5,
    choices: dict | None = None,
) -> ObjectiveCurves:
    """Apply (T1) to given A and B curves."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    sigmas, A, B = (np.asarray(v, dtype=float) for v in (sigmas, A, B))
    if not (sigmas.shape == A.shape == B.shape) or sigmas.ndim != 1 or sigmas.size < 2:
        raise ValueError(
            f"sigmas, A and B must be 1-D of one length ≥ 2, got {sigmas.shape}, {A.shape}, {B.shape}"
        )
    a_n, b_n = minmax(A), minmax(B)
    J = lam * a_n + (1 - lam) * b_n
    return ObjectiveCurves(
        sigmas, A, B, a_n, b_n, J, float(lam), float(sigmas[int(np.argmin(J))]), dict(choices or {})
    )


STATISTICS = ("mmd2", "mmd")


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")


def _discrepancy(x: Tensor, y: Tensor, h: float, statistic: str) -> float:
    """``"mmd2"``: the unbiased MMD²_u (may be slightly negative; E = MMD²);
    ``"mmd"``: sqrt(max(MMD²_u, 0))."""
    d2 = mmd2(x, y, bandwidth=h)
    return float(d2) if statistic == "mmd2" else float(d2.clamp_min(0).sqrt())


def noise_objective(
    source01: Tensor,
    target01: Tensor,
    sigmas: Sequence[float],
    lam: float = 0.5,
    repeats: int = 3,
    bandwidth: str | float = "fixed",
    extractor: FeatureExtractor | None = None,
    seed: int = 0,
    progress: bool = True,
    statistic: str = "mmd2",
) -> ObjectiveCurves:
    """Measure A(σ), B(σ) and J(σ; λ) of (T1) on images.

    Args:
        source01: degraded images (N, 3, H, W) in [0, 1] (the source domain P_s).
        target01: clean target-domain images (M, 3, H, W) in [0, 1] (P_t; unpaired).
        sigmas: the σ grid (noise std on the [-1, 1] scale).
        lam: λ of (T1).
        repeats: R, independent noise draws averaged per σ.
        bandwidth: ``"fixed"`` — median heuristic on the noise-free pooled features, kept for
            every σ (the reading under which A falls and B rises); ``"median"`` — recomputed
            at every σ; or a number.
        extractor: features (default pixels, 2×2 average-pooled).
        seed: seeds the random halves of the source and every noise draw.
        progress: show a progress bar over the σ grid.
        statistic: ``"mmd2"`` — A and B are the unbiased MMD²_u (the standard statistic; J has
            an interior minimum, (T3)); ``"mmd"`` — sqrt(max(MMD²_u, 0)) (J ≈ flat at λ = ½).

    B compares noisy and clean *different random halves* of the source so that no image is
    compared with its own noisy copy (which would bias the unbiased estimator).
    """
    from tqdm.auto import tqdm

    _check_statistic(statistic)
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    if source01.shape[0] < 4 or target01.shape[0] < 2:
        raise ValueError("need at least 4 source and 2 target images")
    extractor = extractor if extractor is not None else PixelFeatures(2)
    half = source01.shape[0] // 2
    order = torch.randperm(source01.shape[0], generator=torch.Generator().manual_seed(seed))
    src_a, src_b = (
        source01[order[:half]],
        source01[order[half:]],
    )  # random halves, same distribution
    clean_src_b = features_at_noise(src_b, 0.0, extractor)
    h_fixed = median_bandwidth(
        torch.cat(
            [
                features_at_noise(source01, 0.0, extractor),
                features_at_noise(target01, 0.0, extractor),
            ]
        )
    )
    A, B = [], []
    for j, sigma in enumerate(tqdm(list(sigmas), desc="σ grid", disable=not progress)):
        a_vals, b_vals = [], []
        for r in range(repeats):
            g = torch.Generator().manual_seed(seed * 1_000_003 + 1009 * j + r)
            fs = features_at_noise(source01, float(sigma), extractor, g)
            ft = features_at_noise(target01, float(sigma), extractor, g)
            fa = features_at_noise(src_a, float(sigma), extractor, g)
            if isinstance(bandwidth, (int, float)):
                h = float(bandwidth)
            elif bandwidth == "fixed":
                h = h_fixed
            elif bandwidth == "median":
                h = median_bandwidth(torch.cat([fs, ft]))
            else:
                raise ValueError(
                    f"bandwidth must be 'fixed', 'median' or a number, got {bandwidth!r}"
                )
            a_vals.append(_discrepancy(fs, ft, h, statistic))
            b_vals.append(_discrepancy(fa, clean_src_b, h, statistic))
        A.append(np.mean(a_vals))
        B.append(np.mean(b_vals))
    choices = {
        "bandwidth": bandwidth if isinstance(bandwidth, str) else float(bandwidth),
        "h_fixed": h_fixed,
        "features": repr(extractor),
        "repeats": repeats,
        "statistic": statistic,
        "n_source": int(source01.shape[0]),
        "n_target": int(target01.shape[0]),
    }
    return objective_from_curves(sigmas, A, B, lam, choices)


def bootstrap_sigma_star(
    sigmas: Sequence[float],
    A_draws: np.ndarray,
    B_draws: np.ndarray,
    lam: float = 0.5,
    n_boot: int = 400,
    seed: int = 0,
) -> np.ndarray:
    """σ* of (T1) for independent draws resampled with replacement.

    Args:
        sigmas: the σ grid, shape (S,).
        A_draws, B_draws: A and B of R independent draws (images and noise), shape (R, S).
        lam: λ of (T1).
        n_boot: number of bootstrap resamples.
        seed: seeds the resampling (numpy ``default_rng``).

    Returns:
        shape (n_boot,): σ* of J built from the mean A and B of each resample of R draws.
    """
    A_draws, B_draws = np.atleast_2d(A_draws), np.atleast_2d(B_draws)
    if A_draws.shape != B_draws.shape or A_draws.shape[1] != len(sigmas):
        raise ValueError(
            f"A_draws and B_draws must both be (R, {len(sigmas)}), got {A_draws.shape}, {B_draws.shape}"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    r = A_draws.shape[0]
    stars = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, r, r)
        stars[i] = objective_from_curves(
            sigmas, A_draws[idx].mean(0), B_draws[idx].mean(0), lam
        ).sigma_star
    return stars


# ----------------------------------------------------------------------------- high dimension


def noise_kernel_factor(
    sigma_feature: float | np.ndarray, bandwidth: float, dim: int, sides: int = 2
) -> float | np.ndarray:
    """The common factor (T3) by which noise scales an RBF kernel value in high dimension.

    E_n k(x + n₁, y + n₂) = (1 + τ)^{−D/2}·exp(−‖x − y‖²/(2h²(1 + τ))), τ = sides·σ_f²/h²; the
    exponent's change is O(τ·‖x − y‖²/h²) = O(1/D) when h² ∝ D, so to leading order every pair
    is scaled by (1 + τ)^{−D/2}, returned here.

    Args:
        sigma_feature: noise std per feature dimension σ_f (σ/p for p×p pooled pixels); any shape.
        bandwidth: the kernel's h > 0.
        dim: the feature dimension D ≥ 1.
        sides: 2 when both arguments are noisy (c(σ)), 1 when one is (≈ √c(σ)).
    """
    if bandwidth <= 0 or dim < 1 or sides not in (1, 2):
        raise ValueError(
            f"need bandwidth > 0, dim ≥ 1, sides 1 or 2; got {bandwidth}, {dim}, {sides}"
        )
    sf = np.asarray(sigma_feature, dtype=float)
    out = (1.0 + sides * sf**2 / bandwidth**2) ** (-0.5 * dim)
    return float(out) if out.ndim == 0 else out


def common_factor_curves(u: np.ndarray, statistic: str = "mmd2") -> tuple[np.ndarray, np.ndarray]:
    """A and B of (T3) up to constant factors, for u = √c(σ) on a grid (shape (S,) each).

    ``"mmd2"``: A = u², B = (1 − u)²; ``"mmd"``: A = u, B = 1 − u. Constant factors (MMD²(P_s, P_t),
    K̄_ss) drop out of the min-max normalisation, so these give J exactly in the model.
    """
    _check_statistic(statistic)
    u = np.asarray(u, dtype=float)
    return (u**2, (1 - u) ** 2) if statistic == "mmd2" else (u.copy(), 1 - u)


def mmd2_minimiser(U: float, lam: float = 0.5) -> float:
    """u* = argmin over u ∈ [U, 1] of J for MMD² in the model (T3): (1 − λ)(1 + U)/(1 + U − 2λU).

    With Ã = (u² − U²)/(1 − U²) and B̃ = (1 − u)²/(1 − U)², dJ/du = 0 ⇔ λu(1 − U) = (1 − λ)(1 − u)(1 + U);
    J is convex in u, so this is the minimum; at λ = ½ it is u* = (1 + U)/2.
    """
    if not 0.0 <= U < 1.0:
        raise ValueError(f"U = √c(σ_max) must lie in [0, 1), got {U}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    return float((1 - lam) * (1 + U) / (1 + U - 2 * lam * U))


# ----------------------------------------------------------------------------- Gaussian model


@dataclass
class GaussianStats:
    """Isotropic Gaussian summary of a feature set: mean (D,), per-dimension variance s²."""

    mean: np.ndarray
    var: float

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def gaussian_stats(features: Tensor) -> GaussianStats:
    """Fit N(μ, s²·I) to features (N, D): μ the sample mean, s² the mean per-dimension variance."""
    x = features.detach().double().reshape(features.shape[0], -1)
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples to estimate a variance")
    return GaussianStats(x.mean(0).cpu().numpy(), float(x.var(0, unbiased=True).mean()))


def _log_ek(h2: float, s2x: float, s2y: float, d2: float, dim: int) -> float:
    """log E k(x, y) of (T2)."""
    c = h2 + s2x + s2y
    return 0.5 * dim * (np.log(h2) - np.log(c)) - d2 / (2 * c)


def gaussian_mmd2(
    p: GaussianStats, q: GaussianStats, bandwidth: float, sigma_p: float = 0.0, sigma_q: float = 0.0
) -> float:
    """Population MMD² (T2) between N(μ_p, (s_p² + σ_p²)I) and N(μ_q, (s_q² + σ_q²)I)."""
    if p.dim != q.dim:
        raise ValueError(f"dimension mismatch: {p.dim} vs {q.dim}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    h2 = bandwidth**2
    sp, sq = p.var + sigma_p**2, q.var + sigma_q**2
    d2 = float(np.sum((p.mean - q.mean) ** 2))
    return float(
        np.exp(_log_ek(h2, sp, sp, 0.0, p.dim))
        + np.exp(_log_ek(h2, sq, sq, 0.0, q.dim))
        - 2 * np.exp(_log_ek(h2, sp, sq, d2, p.dim))
    )


def gaussian_objective(
    source: GaussianStats,
    target: GaussianStats,
    sigmas: Sequence[float],
    bandwidth: float,
    lam: float = 0.5,
    statistic: str = "mmd2",
) -> ObjectiveCurves:
    """(T1) under the Gaussian model: A(σ) = MMD²(N_s^σ, N_t^σ), B(σ) = MMD²(N_s^σ, N_s)
    (``statistic="mmd2"``), or their square roots (``"mmd"``).

    σ is the noise std *in feature space*. For :class:`~drdd_edu.harmonize.PixelFeatures`
    with ``pool = p`` (p×p average pooling of pixels that each got N(0, σ²) noise) pass
    σ/p, not the pixel-space σ that :func:`noise_objective` uses.
    """
    _check_statistic(statistic)
    sig = np.asarray(sigmas, dtype=float)
    power = 1.0 if statistic == "mmd2" else 0.5
    A = [max(gaussian_mmd2(source, target, bandwidth, s, s), 0.0) ** power for s in sig]
    B = [max(gaussian_mmd2(source, source, bandwidth, s, 0.0), 0.0) ** power for s in sig]
    choices = {"model": "isotropic Gaussian", "bandwidth": bandwidth, "dim": source.dim}
    return objective_from_curves(sig, A, B, lam, {**choices, "statistic": statistic})


def kl_isotropic_gaussians(p: GaussianStats, q: GaussianStats, sigma: float = 0.0) -> float:
    """KL(N_p^σ ‖ N_q^σ) for isotropic Gaussians after adding N(0, σ²I) to both.

    KL = D/2·(r − 1 − log r) + ‖μ_p − μ_q‖²/(2(s_q² + σ²)),  r = (s_p² + σ²)/(s_q² + σ²).
    Proposition 3.1 of DRDD: strictly decreasing in σ when p ≠ q.
    """
    if p.dim != q.dim:
        raise ValueError(f"dimension mismatch: {p.dim} vs {q.dim}")
    sp, sq = p.var + sigma**2, q.var + sigma**2
    r = sp / sq
    return float(0.5 * p.dim * (r - 1 - np.log(r)) + np.sum((p.mean - q.mean) ** 2) / (2 * sq))
