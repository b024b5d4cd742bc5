"""Image-quality metrics (PSNR, SSIM) and the kernel two-sample statistic MMD² (+ permutation test).

Images: float tensors ``(B, 3, H, W)`` (or one image ``(3, H, W)``) with values in
``[0, data_range]`` (``data_range = 1`` for our [0, 1] images). ``psnr``/``ssim`` return one
value per image, shape ``(B,)`` (a 0-d tensor for a single image), computed in float64 on the
input's device.

Feature sets for MMD: ``(N, D)`` and ``(M, D)`` tensors (more trailing dimensions are flattened,
so a batch of images can be passed directly as pixel features).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .degradations import check_images, make_generator

__all__ = [
    "median_bandwidth",
    "mmd2",
    "mmd_permutation_test",
    "psnr",
    "rbf_kernel",
    "ssim",
]


# --------------------------------------------------------------------------------------------
# PSNR and SSIM
# --------------------------------------------------------------------------------------------


def _positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0, else ValueError."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def _check_pair(a: Tensor, b: Tensor, data_range: float) -> tuple[Tensor, Tensor, bool]:
    """Validate two image batches of equal shape; return them as float64 ``(B, 3, H, W)``."""
    value_range = (0.0, _positive(data_range, "data_range"))
    a4, unbatched_a = check_images(a, "a", value_range=value_range)
    b4, unbatched_b = check_images(b, "b", value_range=value_range)
    if a4.shape != b4.shape or unbatched_a != unbatched_b:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a4.device != b4.device:
        raise ValueError(f"a and b must be on the same device, got {a4.device} and {b4.device}")
    return a4.double(), b4.double(), unbatched_a


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image: ``PSNR = 10 · log10(data_range² / MSE)`` in dB.

    ``MSE`` is the mean of ``(a − b)²`` over channels and pixels of each image (as
    ``skimage.metrics.peak_signal_noise_ratio``). Identical images give ``+inf``.

    Args:
        a, b: ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors with values in ``[0, data_range]``.
        data_range: the dynamic range of the images (1 for [0, 1] images).

    Returns:
        float64 tensor of shape ``(B,)`` (0-d for a single image) on the input's device.
    """
    x, y, unbatched = _check_pair(a, b, data_range)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    out = 10.0 * torch.log10(data_range**2 / mse)  # mse = 0 gives +inf
    return out[0] if unbatched else out


def ssim(
    a: Tensor,
    b: Tensor,
    data_range: float = 1.0,
    *,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity per image, matching ``skimage.metrics.structural_similarity``.

    Reproduces skimage's defaults (``gaussian_weights=False, use_sample_covariance=True``) with
    ``channel_axis`` set and ``data_range`` given. Per channel, with uniform ``w×w`` window means
    ``μ``, ``N = w²`` and the sample-covariance factor ``N/(N−1)``::

        σ_a² = N/(N−1) · (mean(a²) − μ_a²),   σ_ab = N/(N−1) · (mean(a·b) − μ_a·μ_b)
        S    = (2 μ_a μ_b + C1)(2 σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2))
        C1   = (k1 · data_range)²,  C2 = (k2 · data_range)²

    skimage filters with reflect padding and then discards a border of ``(w−1)/2`` pixels before
    averaging ``S``; the kept pixels are exactly those whose window lies inside the image, so a
    "valid" (unpadded) window average gives the same numbers. The result is the mean of ``S`` over
    those pixels and over the 3 channels.

    Args:
        a, b: ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors, values in ``[0, data_range]``,
            with ``H, W >= win_size``.
        data_range: dynamic range of the images (1 for [0, 1] images).
        win_size: odd window side (7 as in skimage).
        k1, k2: stabilising constants (0.01, 0.03 as in skimage).

    Returns:
        float64 tensor of shape ``(B,)`` (0-d for a single image) on the input's device.
    """
    x, y, unbatched = _check_pair(a, b, data_range)
    if not (isinstance(win_size, int) and win_size >= 3 and win_size % 2 == 1):
        raise ValueError(f"win_size must be an odd int >= 3, got {win_size!r}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(
            f"images must be at least {win_size}x{win_size} for SSIM, got {tuple(x.shape[-2:])}"
        )

    def mean(z: Tensor) -> Tensor:  # uniform window mean, valid positions only
        return F.avg_pool2d(z, win_size, stride=1)

    cov_norm = win_size**2 / (win_size**2 - 1)
    mu_x, mu_y = mean(x), mean(y)
    var_x = cov_norm * (mean(x * x) - mu_x * mu_x)
    var_y = cov_norm * (mean(y * y) - mu_y * mu_y)
    cov_xy = cov_norm * (mean(x * y) - mu_x * mu_y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    out = s_map.mean(dim=(1, 2, 3))
    return out[0] if unbatched else out


# --------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------


def _as_features(z: Tensor, name: str) -> Tensor:
    """Validate a feature set and return it as float64 ``(N, D)`` (trailing dims flattened)."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if z.ndim < 2:
        raise ValueError(f"{name} must have shape (N, D) (or (N, ...)), got {tuple(z.shape)}")
    z = z.reshape(z.shape[0], -1)
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{name} is empty, got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z.double()


def _check_sets(x: Tensor, y: Tensor, unbiased: bool) -> tuple[Tensor, Tensor]:
    fx, fy = _as_features(x, "x"), _as_features(y, "y")
    if fx.shape[1] != fy.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dimension, got {fx.shape[1]} and {fy.shape[1]}"
        )
    if fx.device != fy.device:
        raise ValueError(f"x and y must be on the same device, got {fx.device} and {fy.device}")
    if unbiased and min(fx.shape[0], fy.shape[0]) < 2:
        raise ValueError(
            f"the unbiased MMD² needs at least 2 samples in x and in y, got "
            f"{fx.shape[0]} and {fy.shape[0]}"
        )
    return fx, fy


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances ``‖x_i − y_j‖²`` (float64, clipped at 0): ``(N, M)``."""
    d2 = x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * (x @ y.T)
    return d2.clamp_min_(0.0)


def _median_from_sq(d2: Tensor) -> float:
    """Median of ``sqrt(d2[i, j])`` over ``i < j`` (average of the two middle values if even)."""
    n = d2.shape[0]
    upper = torch.ones(n, n, dtype=torch.bool, device=d2.device).triu_(1)
    vals = d2[upper]
    m = vals.numel()
    lo = vals.kthvalue((m - 1) // 2 + 1).values.sqrt()
    hi = vals.kthvalue(m // 2 + 1).values.sqrt()
    return float(0.5 * (lo + hi))


def median_bandwidth(x: Tensor, y: Tensor | None = None) -> float:
    """Median heuristic: ``h = median{‖z_i − z_j‖ : i < j}`` over the pooled sample ``z = [x; y]``.

    The median runs over the ``n(n−1)/2`` distinct pairs of the ``n = N + M`` pooled points (the
    zero self-distances are excluded; for an even count the two middle values are averaged).

    Args:
        x: ``(N, D)`` features (``(N, ...)`` is flattened).
        y: optional ``(M, D)`` features, pooled with ``x``.

    Returns:
        The bandwidth ``h > 0`` (a Python float).

    Raises:
        ValueError: fewer than 2 pooled points, or a zero median (more than half the pairs
            coincide), which would make the kernel degenerate.
    """
    z = _as_features(x, "x")
    if y is not None:
        z = torch.cat([z, _check_sets(x, y, unbiased=False)[1]])
    if z.shape[0] < 2:
        raise ValueError("the median heuristic needs at least 2 points")
    h = _median_from_sq(_sq_dists(z, z))
    if not h > 0:
        raise ValueError("median pairwise distance is 0 (mostly identical points); pass bandwidth")
    return h


def rbf_kernel(x: Tensor, y: Tensor, bandwidth: float) -> Tensor:
    """Gaussian RBF kernel matrix ``K_ij = exp(−‖x_i − y_j‖² / (2h²))``: float64 ``(N, M)``."""
    bandwidth = _positive(bandwidth, "bandwidth")
    fx, fy = _check_sets(x, y, unbiased=False)
    return torch.exp(-_sq_dists(fx, fy) / (2.0 * bandwidth**2))


def _mmd2_from_kernel(k: Tensor, groups: Tensor, n: int, m: int, unbiased: bool) -> Tensor:
    """MMD² for many splits of a pooled kernel matrix at once.

    Args:
        k: pooled kernel matrix ``(n + m, n + m)`` float64.
        groups: ``(P, n + m)`` float64 indicators, 1 for the points assigned to x (``n`` of them).
        n, m: group sizes.
        unbiased: U-statistic (drop the ``i = j`` terms) or V-statistic (keep them).

    Returns:
        ``(P,)`` float64 MMD² values.
    """
    if unbiased:
        k = k - torch.diag(torch.diagonal(k))
    s, t = groups, 1.0 - groups
    ks = s @ k  # (P, n+m)
    sum_xx = (ks * s).sum(1)
    sum_xy = (ks * t).sum(1)
    sum_yy = ((t @ k) * t).sum(1)
    if unbiased:
        return sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2.0 * sum_xy / (n * m)
    return sum_xx / n**2 + sum_yy / m**2 - 2.0 * sum_xy / (n * m)


def _pooled_kernel(
    x: Tensor, y: Tensor, bandwidth: float | None, unbiased: bool
) -> tuple[Tensor, int, int, float]:
    fx, fy = _check_sets(x, y, unbiased)
    z = torch.cat([fx, fy])
    d2 = _sq_dists(z, z)
    d2.fill_diagonal_(0.0)
    if bandwidth is None:
        bandwidth = _median_from_sq(d2)
        if not bandwidth > 0:
            raise ValueError("median pairwise distance is 0; pass an explicit bandwidth")
    else:
        bandwidth = _positive(bandwidth, "bandwidth")
    return (
        torch.exp(-d2 / (2.0 * float(bandwidth) ** 2)),
        fx.shape[0],
        fy.shape[0],
        float(bandwidth),
    )


def mmd2(x: Tensor, y: Tensor, bandwidth: float | None = None, unbiased: bool = True) -> Tensor:
    """Squared maximum mean discrepancy between samples ``x ~ P`` and ``y ~ Q`` (RBF kernel).

    With ``k(a, b) = exp(−‖a − b‖² / (2h²))``::

        unbiased (U-statistic):
            MMD²_u = 1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j)
                     − 2/(NM) Σ_{i,j} k(x_i, y_j)        (can be slightly negative; E = MMD²)
        biased (V-statistic, unbiased=False): the same with all i, j and 1/N², 1/M² (>= 0).

    Args:
        x: ``(N, D)`` features (``(N, ...)`` is flattened), float, finite.
        y: ``(M, D)`` features, same ``D``.
        bandwidth: ``h``; ``None`` uses the median heuristic of ``median_bandwidth`` over the
            pooled sample ``[x; y]`` (median of all distinct pairwise Euclidean distances).
        unbiased: U-statistic (needs ``N, M >= 2``) or V-statistic.

    Returns:
        0-d float64 tensor on the input's device.
    """
    k, n, m, _ = _pooled_kernel(x, y, bandwidth, unbiased)
    groups = torch.zeros(1, n + m, dtype=k.dtype, device=k.device)
    groups[0, :n] = 1.0
    return _mmd2_from_kernel(k, groups, n, m, unbiased)[0]


def mmd_permutation_test(
    x: Tensor,
    y: Tensor,
    n_permutations: int = 500,
    generator: int | torch.Generator | None = 0,
    bandwidth: float | None = None,
    unbiased: bool = True,
    chunk_size: int = 256,
) -> tuple[float, float]:
    """Permutation test of ``H0: P = Q`` with the MMD² statistic.

    The pooled sample ``[x; y]`` is randomly re-split ``n_permutations`` times into groups of
    sizes ``N`` and ``M``; the p-value is ``(1 + #{perm: MMD²_perm >= MMD²_obs}) / (1 + n_perm)``
    (the ``+1`` counts the observed split, so the test is exact and ``p > 0``). The bandwidth
    (median heuristic over the pooled sample when ``None``) is fixed once, as it is invariant to
    re-splitting.

    Args:
        x: ``(N, D)`` features; y: ``(M, D)`` features (see ``mmd2``).
        n_permutations: number of random re-splits (>= 1).
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        bandwidth: RBF bandwidth ``h`` or ``None`` for the median heuristic.
        unbiased: statistic as in ``mmd2``.
        chunk_size: permutations evaluated per matrix product (memory knob).

    Returns:
        ``(mmd2_observed, p_value)`` as Python floats.
    """
    if not (isinstance(n_permutations, int) and n_permutations >= 1):
        raise ValueError(f"n_permutations must be an int >= 1, got {n_permutations!r}")
    k, n, m, _ = _pooled_kernel(x, y, bandwidth, unbiased)
    gen = make_generator(generator)
    observed = torch.zeros(1, n + m, dtype=k.dtype, device=k.device)
    observed[0, :n] = 1.0
    obs = _mmd2_from_kernel(k, observed, n, m, unbiased)[0]
    exceed = 0
    for start in range(0, n_permutations, chunk_size):
        p = min(chunk_size, n_permutations - start)
        src = gen.device if gen is not None else torch.device("cpu")
        perms = torch.rand(p, n + m, generator=gen, device=src).argsort(dim=1).to(k.device)
        groups = torch.zeros(p, n + m, dtype=k.dtype, device=k.device)
        groups.scatter_(1, perms[:, :n], 1.0)
        exceed += int((_mmd2_from_kernel(k, groups, n, m, unbiased) >= obs).sum())
    return float(obs), (1 + exceed) / (1 + n_permutations)
