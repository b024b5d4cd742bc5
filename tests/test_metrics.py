"""Tests for drdd_edu.metrics: PSNR/SSIM against scikit-image, MMD² against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import pdist
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from drdd_edu.degradations import TASKS, degrade
from drdd_edu.metrics import (
    median_bandwidth,
    mmd2,
    mmd_permutation_test,
    psnr,
    rbf_kernel,
    ssim,
)


def _sk_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    return np.array(
        [
            structural_similarity(x.numpy(), y.numpy(), channel_axis=0, data_range=data_range)
            for x, y in zip(a, b, strict=True)
        ]
    )


def _sk_psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    return np.array(
        [
            peak_signal_noise_ratio(x.numpy(), y.numpy(), data_range=data_range)
            for x, y in zip(a, b, strict=True)
        ]
    )


@pytest.fixture(scope="module")
def photo_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Real clean crops and their degraded versions (one per task): two (5, 3, 48, 64) batches."""
    clean = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        img = torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float() / 255
        img = F.interpolate(img[None], size=(96, 128), mode="area")[0].clamp(0, 1)
        clean.append(img[:, 24:72, 32:96])
    clean_t = torch.stack(clean)
    degraded = torch.cat([degrade(clean_t[i : i + 1], t, seed=i) for i, t in enumerate(TASKS)])
    return clean_t, degraded


def _random_pair(seed: int, shape: tuple[int, ...], dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=dtype)
    b = (a + 0.15 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return a, b


# ------------------------------------------------------------------------------------------
# PSNR
# ------------------------------------------------------------------------------------------


def test_psnr_closed_form() -> None:
    a = torch.full((2, 3, 8, 8), 0.5)
    b = a.clone()
    b[0] += 0.1  # MSE = 0.01 -> 20 dB
    b[1, :, :4] += 0.2  # half of the pixels off by 0.2: MSE = 0.02 -> 10·log10(50) dB
    torch.testing.assert_close(psnr(a, b), torch.tensor([20.0, 10 * math.log10(50)]).double())
    assert psnr(a, a).isinf().all()
    # data_range scales out
    torch.testing.assert_close(psnr(a * 255, b * 255, data_range=255), psnr(a, b))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_skimage_random(seed: int) -> None:
    a, b = _random_pair(seed, (3, 3, 20, 31), torch.float64)
    np.testing.assert_allclose(psnr(a, b).numpy(), _sk_psnr(a, b), rtol=0, atol=1e-10)


def test_psnr_matches_skimage_real(photo_pairs) -> None:
    clean, degraded = photo_pairs
    np.testing.assert_allclose(psnr(clean, degraded).numpy(), _sk_psnr(clean, degraded), atol=1e-4)
    single = psnr(clean[0], degraded[0])
    assert single.ndim == 0 and abs(float(single) - _sk_psnr(clean[:1], degraded[:1])[0]) < 1e-4


# ------------------------------------------------------------------------------------------
# SSIM
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "shape", "dtype"),
    [
        (0, (3, 3, 32, 32), torch.float64),
        (1, (2, 3, 7, 7), torch.float64),  # the smallest allowed image
        (2, (2, 3, 23, 41), torch.float32),
        (3, (1, 3, 64, 48), torch.float32),
    ],
)
def test_ssim_matches_skimage_random(seed: int, shape, dtype) -> None:
    a, b = _random_pair(seed, shape, dtype)
    ours = ssim(a, b).numpy()
    assert ours.shape == (shape[0],)
    np.testing.assert_allclose(ours, _sk_ssim(a, b), rtol=0, atol=1e-4)
    # independent images: SSIM near 0; and it is symmetric
    c = torch.rand(shape, generator=torch.Generator().manual_seed(99), dtype=dtype)
    np.testing.assert_allclose(ssim(a, c).numpy(), _sk_ssim(a, c), rtol=0, atol=1e-4)
    torch.testing.assert_close(ssim(a, b), ssim(b, a))


def test_ssim_matches_skimage_real(photo_pairs) -> None:
    clean, degraded = photo_pairs
    ours = ssim(clean, degraded).numpy()
    np.testing.assert_allclose(ours, _sk_ssim(clean, degraded), rtol=0, atol=1e-4)
    assert (ours < 0.99).all()  # every degradation lowers SSIM
    torch.testing.assert_close(ssim(clean, clean), torch.ones(5, dtype=torch.float64))
    # data_range = 255 on 0..255 images
    ours255 = ssim(clean * 255, degraded * 255, data_range=255).numpy()
    np.testing.assert_allclose(ours255, _sk_ssim(clean * 255, degraded * 255, 255), atol=1e-4)
    single = ssim(clean[1], degraded[1])
    assert single.ndim == 0 and abs(float(single) - ours[1]) < 1e-12


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_metric_input_validation(fn) -> None:
    a = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        fn(a, a[:1])
    with pytest.raises(ValueError, match="same shape"):
        fn(a[0], a[:1])
    with pytest.raises(TypeError, match="floating-point"):
        fn(a, (a * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="channels"):
        fn(a[:, :1], a[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        fn(a, torch.full_like(a, float("nan")))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(a * 2, a)
    with pytest.raises(ValueError, match="data_range"):
        fn(a, a, data_range=0)
    if fn is ssim:
        with pytest.raises(ValueError, match="at least 7x7"):
            ssim(a[..., :6, :], a[..., :6, :])


# ------------------------------------------------------------------------------------------
# MMD
# ------------------------------------------------------------------------------------------


def _brute_mmd2(x: np.ndarray, y: np.ndarray, h: float, unbiased: bool) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * h * h))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if unbiased:
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)


def _population_mmd2(delta_mu: float, s: float, h: float, d: int) -> float:
    """MMD² of N(μ1, s²I) vs N(μ2, s²I) in d dims under k = exp(−‖a−b‖²/(2h²))."""
    c = (h * h / (h * h + 2 * s * s)) ** (d / 2)
    return 2 * c - 2 * c * math.exp(-(delta_mu**2) / (2 * (h * h + 2 * s * s)))


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd2_matches_brute_force(unbiased: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    for h in (0.5, 1.7):
        expected = _brute_mmd2(x.numpy(), y.numpy(), h, unbiased)
        assert abs(float(mmd2(x, y, bandwidth=h, unbiased=unbiased)) - expected) < 1e-12
    k = rbf_kernel(x, y, 1.7)
    assert k.shape == (7, 5)
    assert abs(float(k[2, 3]) - math.exp(-float(((x[2] - y[3]) ** 2).sum()) / (2 * 1.7**2))) < 1e-12


def test_median_heuristic_is_the_median_pairwise_distance() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 4, generator=g), torch.randn(7, 4, generator=g) * 2
    pooled = torch.cat([x, y]).double().numpy()
    expected = float(np.median(pdist(pooled)))  # 136 pairs: mean of the two middle ones
    assert abs(median_bandwidth(x, y) - expected) < 1e-12
    assert abs(median_bandwidth(x) - float(np.median(pdist(x.double().numpy())))) < 1e-12
    torch.testing.assert_close(mmd2(x, y), mmd2(x, y, bandwidth=expected))
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        mmd2(torch.zeros(5, 2), torch.zeros(4, 2))


@pytest.mark.parametrize(("d", "delta", "s", "h"), [(1, 1.0, 0.5, 1.0), (3, 0.6, 1.0, 1.5)])
def test_unbiased_mmd2_matches_population_value(d: int, delta: float, s: float, h: float) -> None:
    """Average of 20 unbiased estimates (N = M = 300) vs. the closed form, ~4 MC std errors."""
    g = torch.Generator().manual_seed(d)
    mu = torch.zeros(d)
    mu[0] = delta
    estimates = []
    for _ in range(20):
        x = s * torch.randn(300, d, generator=g, dtype=torch.float64)
        y = s * torch.randn(300, d, generator=g, dtype=torch.float64) + mu
        estimates.append(float(mmd2(x, y, bandwidth=h)))
    est = torch.tensor(estimates)
    target = _population_mmd2(delta, s, h, d)
    stderr = float(est.std()) / math.sqrt(len(estimates))
    assert abs(float(est.mean()) - target) < max(4 * stderr, 0.002), (float(est.mean()), target)


def test_unbiased_vs_biased_at_small_sample_size() -> None:
    """With N = M = 5 the U-statistic is unbiased; the V-statistic is biased upwards."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2000, 5, 1, generator=g, dtype=torch.float64)
    y = torch.randn(2000, 5, 1, generator=g, dtype=torch.float64) + 1.5
    u = torch.stack([mmd2(x[r], y[r], bandwidth=1.0) for r in range(2000)])
    v = torch.stack([mmd2(x[r], y[r], bandwidth=1.0, unbiased=False) for r in range(2000)])
    target = _population_mmd2(1.5, 1.0, 1.0, 1)
    assert abs(float(u.mean()) - target) < 4 * float(u.std()) / math.sqrt(2000)
    assert float(v.mean()) - target > 0.1  # bias ≈ 2(1 − E k(x, x'))/5 ≈ 0.17
    assert float(v.min()) >= 0.0 and float(u.min()) < 0.0  # U can be negative, V cannot


def test_same_distribution_mmd2_is_near_zero() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(400, 8, generator=g), torch.randn(500, 8, generator=g)
    assert abs(float(mmd2(x, y))) < 0.005
    far = torch.randn(500, 8, generator=g) + 1.0
    assert float(mmd2(x, far)) > 0.05
    # images can be passed directly: trailing dimensions are flattened
    imgs = torch.rand(6, 3, 4, 4, generator=g)
    torch.testing.assert_close(
        mmd2(imgs[:3], imgs[3:]), mmd2(imgs[:3].flatten(1), imgs[3:].flatten(1))
    )


def test_permutation_test_detects_difference_and_not_sameness() -> None:
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(60, 4, generator=g), torch.randn(50, 4, generator=g)
    y_shifted = y + torch.tensor([1.5, 0, 0, 0])
    stat, p = mmd_permutation_test(x, y_shifted, n_permutations=200, generator=0)
    assert abs(stat - float(mmd2(x, y_shifted))) < 1e-12
    assert p == pytest.approx(1 / 201)  # no permutation beats the observed split
    _, p_same = mmd_permutation_test(x, y, n_permutations=200, generator=0)
    assert p_same > 0.1
    # deterministic for a seed
    assert mmd_permutation_test(x, y, n_permutations=50, generator=3) == mmd_permutation_test(
        x, y, n_permutations=50, generator=3
    )


def test_permutation_p_value_formula() -> None:
    """Recompute the p-value from the same random splits with mmd2 on permuted data."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(9, 2, generator=g), torch.randn(8, 2, generator=g) + 0.3
    n_perm = 40
    stat, p = mmd_permutation_test(x, y, n_permutations=n_perm, generator=9, bandwidth=1.0)
    pooled = torch.cat([x, y])
    perms = torch.rand(n_perm, 17, generator=torch.Generator().manual_seed(9)).argsort(dim=1)
    exceed = 0
    for perm in perms:
        in_x = torch.zeros(17, dtype=torch.bool)
        in_x[perm[:9]] = True
        exceed += float(mmd2(pooled[in_x], pooled[~in_x], bandwidth=1.0)) >= stat - 1e-12
    assert p == pytest.approx((1 + exceed) / (1 + n_perm))


def test_permutation_test_is_calibrated_under_the_null() -> None:
    p_values = []
    for seed in range(60):
        g = torch.Generator().manual_seed(100 + seed)
        x, y = torch.randn(20, 2, generator=g), torch.randn(25, 2, generator=g)
        p_values.append(mmd_permutation_test(x, y, n_permutations=99, generator=seed)[1])
    p = torch.tensor(p_values)
    assert 0.35 < float(p.mean()) < 0.65
    assert float((p <= 0.05).float().mean()) <= 0.15


def test_mmd_input_validation() -> None:
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="feature dimension"):
        mmd2(x, torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd2(x, torch.randn(1, 3))
    mmd2(x, torch.randn(1, 3), unbiased=False)  # fine for the V-statistic
    with pytest.raises(ValueError, match="NaN"):
        mmd2(x, torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        mmd2(torch.randn(5), torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        mmd2(x, torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, bandwidth=float("inf"))
    with pytest.raises(ValueError, match="n_permutations"):
        mmd_permutation_test(x, x, n_permutations=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_gpu(photo_pairs) -> None:
    clean, degraded = photo_pairs
    torch.testing.assert_close(ssim(clean.cuda(), degraded.cuda()).cpu(), ssim(clean, degraded))
    torch.testing.assert_close(psnr(clean.cuda(), degraded.cuda()).cpu(), psnr(clean, degraded))
    x, y = torch.randn(30, 3), torch.randn(40, 3) + 0.5
    torch.testing.assert_close(mmd2(x.cuda(), y.cuda()).cpu(), mmd2(x, y))
    stat, p = mmd_permutation_test(x.cuda(), y.cuda(), n_permutations=50, generator=0)
    assert (stat, p) == pytest.approx(mmd_permutation_test(x, y, n_permutations=50, generator=0))
