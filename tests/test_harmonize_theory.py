"""Domain harmonisation and the optimal-noise theory: closed forms, trends, determinism."""

import math

import numpy as np
import pytest
import torch

from drdd_edu.harmonize import (
    PixelFeatures,
    RandomConvEncoder,
    add_noise,
    embed_2d,
    harmonisation_curves,
)
from drdd_edu.metrics import mmd2
from drdd_edu.theory import (
    GaussianStats,
    bootstrap_sigma_star,
    common_factor_curves,
    gaussian_mmd2,
    gaussian_objective,
    gaussian_stats,
    kl_isotropic_gaussians,
    minmax,
    mmd2_minimiser,
    noise_kernel_factor,
    noise_objective,
    objective_from_curves,
)


def _domains(n=48, size=16, seed=0):
    """Two synthetic 'degradation' domains and a clean one, images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3 * n, 3, size, size, generator=g) * 0.5 + 0.25
    return {"dark": base[:n] * 0.4, "bright": base[n : 2 * n] * 0.6 + 0.4, "clean": base[2 * n :]}


def test_gaussian_mmd2_matches_monte_carlo():
    D, h = 4, 1.5
    p = GaussianStats(np.zeros(D), 0.3)
    q = GaussianStats(np.full(D, 0.5), 0.6)
    g = torch.Generator().manual_seed(0)
    n = 3000
    x = torch.randn(n, D, generator=g, dtype=torch.float64) * math.sqrt(0.3 + 0.2**2)
    y = torch.randn(n, D, generator=g, dtype=torch.float64) * math.sqrt(0.6) + 0.5
    mc = float(mmd2(x, y, bandwidth=h))
    closed = gaussian_mmd2(p, q, h, sigma_p=0.2)
    assert closed == pytest.approx(mc, abs=0.01)
    assert gaussian_mmd2(p, p, h) == pytest.approx(0.0, abs=1e-12)


def test_kl_shrinks_with_noise_prop_3_1():
    p = GaussianStats(np.zeros(10), 0.2)
    q = GaussianStats(np.full(10, 0.3), 0.5)
    kls = [kl_isotropic_gaussians(p, q, s) for s in np.linspace(0, 2, 21)]
    assert all(b < a for a, b in zip(kls, kls[1:], strict=False))
    assert kl_isotropic_gaussians(p, p, 0.7) == pytest.approx(0.0, abs=1e-12)


def test_objective_from_curves():
    s = np.linspace(0, 2, 5)
    A = np.array([4.0, 3.0, 2.0, 1.0, 0.0])
    B = np.array([0.0, 0.5, 1.0, 3.0, 4.0])
    assert objective_from_curves(s, A, B, lam=1.0).sigma_star == 2.0  # float-exact: grid
    assert objective_from_curves(s, A, B, lam=0.0).sigma_star == 0.0  # float-exact: grid
    o = objective_from_curves(s, A, B, lam=0.5)
    np.testing.assert_allclose(o.J, 0.5 * minmax(A) + 0.5 * minmax(B))
    assert o.sigma_star == 1.0  # float-exact: grid
    with pytest.raises(ValueError, match="lam"):
        objective_from_curves(s, A, B, lam=2.0)


def test_gaussian_objective_has_interior_optimum():
    src = GaussianStats(np.zeros(50), 0.05)
    tgt = GaussianStats(np.full(50, 0.2), 0.08)
    o = gaussian_objective(src, tgt, np.linspace(0, 2, 41), bandwidth=2.0)
    assert np.all(np.diff(o.A) <= 1e-12) and np.all(np.diff(o.B) >= -1e-12)
    assert 0.0 < o.sigma_star < 2.0


def test_noise_harmonises_domains():
    doms = _domains()
    sig = [0.0, 0.8, 1.6]
    for bw in ("median", "fixed"):
        c = harmonisation_curves(doms, sig, bandwidth=bw, seed=1, progress=False)
        between = c.curve("dark", "bright")
        assert between[-1] < 0.5 * between[0], f"noise should pull the domains together ({bw})"
        assert c.mmd2.shape == (3, 3) and c.bandwidths.shape == (3,)
    fixed = harmonisation_curves(doms, sig, bandwidth="fixed", progress=False)
    assert np.all(fixed.bandwidths == fixed.bandwidths[0])
    # deterministic for a seed
    a = harmonisation_curves(doms, sig, seed=3, progress=False).mmd2
    b = harmonisation_curves(doms, sig, seed=3, progress=False).mmd2
    np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError):
        fixed.curve("dark", "nope")


def test_noise_objective_trends_and_determinism():
    doms = _domains(n=64)
    source = torch.cat([doms["dark"], doms["bright"]])
    sig = np.linspace(0, 2, 9)
    o = noise_objective(source, doms["clean"], sig, repeats=1, seed=0, progress=False)
    assert o.A[-1] < o.A[0], "harmonisation term must fall"
    assert o.B[-1] > o.B[0], "corruption term must rise"
    assert o.B[0] < 0.2 * o.B[-1], "B(0) compares two halves of one distribution"
    assert sig[0] < o.sigma_star < sig[-1]
    again = noise_objective(source, doms["clean"], sig, repeats=1, seed=0, progress=False)
    np.testing.assert_array_equal(o.J, again.J)


def test_features_and_embedding():
    doms = _domains(n=20)
    enc = RandomConvEncoder(width=16, seed=0)
    x = add_noise(doms["dark"], 0.5, torch.Generator().manual_seed(0))
    f1, f2 = enc(x), RandomConvEncoder(width=16, seed=0)(x)
    assert f1.shape == (20, 32) and torch.equal(f1, f2)
    assert PixelFeatures(4)(x).shape == (20, 3 * 4 * 4)
    coords, labels = embed_2d({k: PixelFeatures(2)(v) for k, v in doms.items()}, method="pca")
    assert coords.shape == (60, 2) and list(labels[:1]) == ["dark"]
    with pytest.raises(ValueError, match="method"):
        embed_2d({"a": x.flatten(1)}, method="tsne")
    with pytest.raises(ValueError, match="sigma"):
        add_noise(doms["dark"], -1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_noise(doms["dark"] * 5, 0.1)


def test_gaussian_stats():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 6, generator=g) * 0.5 + 2.0
    st = gaussian_stats(x)
    np.testing.assert_allclose(st.mean, 2.0, atol=0.05)
    assert st.var == pytest.approx(0.25, rel=0.05)


def test_umap_embedding_keeps_torch_threads():
    doms = _domains(n=30, size=8)
    torch.set_num_threads(1)
    coords, labels = embed_2d({k: PixelFeatures(2)(v) for k, v in doms.items()}, method="umap")
    assert coords.shape == (90, 2) and np.isfinite(coords).all()
    assert torch.get_num_threads() == 1, "embed_2d must restore torch's thread count"


# ----------------------------------------------------------------------------- MMD vs MMD²


def test_noise_objective_statistic_mmd_is_sqrt_of_clipped_mmd2():
    doms = _domains(n=40)
    source = torch.cat([doms["dark"], doms["bright"]])
    sig = [0.0, 0.5, 1.0]
    kw = dict(repeats=1, seed=2, progress=False)
    sq = noise_objective(source, doms["clean"], sig, statistic="mmd2", **kw)
    rt = noise_objective(source, doms["clean"], sig, statistic="mmd", **kw)
    # the same draws: the "mmd" curves are sqrt(max(MMD²_u, 0)) of the "mmd2" ones
    np.testing.assert_allclose(rt.A, np.sqrt(np.clip(sq.A, 0, None)), rtol=1e-6)
    np.testing.assert_allclose(rt.B, np.sqrt(np.clip(sq.B, 0, None)), rtol=1e-6)
    assert sq.choices["statistic"] == "mmd2" and rt.choices["statistic"] == "mmd"
    # the default is MMD²
    default = noise_objective(source, doms["clean"], sig, **kw)
    np.testing.assert_array_equal(default.A, sq.A)
    with pytest.raises(ValueError, match="statistic"):
        noise_objective(source, doms["clean"], sig, statistic="MMD", **kw)
    with pytest.raises(ValueError, match="statistic"):
        gaussian_objective(
            GaussianStats(np.zeros(3), 0.1),
            GaussianStats(np.ones(3), 0.1),
            sig,
            1.0,
            statistic="kl",
        )


def test_unbiased_mmd2_of_one_distribution_is_zero_within_noise():
    g = torch.Generator().manual_seed(4)
    vals = [
        float(mmd2(torch.randn(200, 50, generator=g), torch.randn(200, 50, generator=g), 7.0))
        for _ in range(5)
    ]
    # centred on 0 (the U-statistic is unbiased), and can be negative
    assert abs(np.mean(vals)) < 3 * np.std(vals, ddof=1) / math.sqrt(5) + 1e-6
    assert max(abs(v) for v in vals) < 5e-3
    shifted = float(
        mmd2(torch.randn(200, 50, generator=g), torch.randn(200, 50, generator=g) + 0.5, 7.0)
    )
    assert shifted > 10 * max(abs(v) for v in vals)


def test_noise_kernel_factor_matches_monte_carlo_and_one_sided_is_sqrt():
    D, h, s = 300, 10.0, 0.6
    g = torch.Generator().manual_seed(0)
    x = torch.randn(D, generator=g, dtype=torch.float64) * 0.5
    y = torch.randn(D, generator=g, dtype=torch.float64) * 0.5
    n = torch.randn(20000, D, generator=g, dtype=torch.float64) * s * math.sqrt(2)
    k0 = math.exp(-float(((x - y) ** 2).sum()) / (2 * h**2))
    ratio = float(torch.exp(-((x - y + n) ** 2).sum(1) / (2 * h**2)).mean()) / k0
    c = noise_kernel_factor(s, h, D)
    assert c < 0.5  # a strong, not a perturbative, effect
    assert ratio == pytest.approx(c, rel=0.02)  # common factor up to O(1/D)
    c1 = noise_kernel_factor(s, h, D, sides=1)
    assert c1 == pytest.approx(math.sqrt(c), rel=D * s**4 / h**4)
    np.testing.assert_allclose(noise_kernel_factor(np.array([0.0, s]), h, D), [1.0, c])
    with pytest.raises(ValueError, match="bandwidth"):
        noise_kernel_factor(s, 0.0, D)


def test_mmd2_minimiser_is_the_argmin_of_the_model():
    u = np.linspace(1.0, 0.0, 100001)
    for U in (0.0, 0.2, 0.5):
        for lam in (0.3, 0.5, 0.7):
            keep = u >= U
            A, B = common_factor_curves(u[keep], "mmd2")
            J = objective_from_curves(np.arange(keep.sum()), A, B, lam).J
            assert u[keep][int(np.argmin(J))] == pytest.approx(mmd2_minimiser(U, lam), abs=1e-4)
    assert mmd2_minimiser(0.2) == pytest.approx(0.6)  # (1 + U)/2 at λ = ½
    # MMD: J is exactly flat at λ = ½
    A, B = common_factor_curves(u, "mmd")
    np.testing.assert_allclose(objective_from_curves(u, A, B, 0.5).J, 0.5, atol=1e-12)
    with pytest.raises(ValueError, match="U"):
        mmd2_minimiser(1.0)


def test_gaussian_model_mmd_is_flat_and_mmd2_minimum_is_u_star():
    D, v = 2000, 0.065
    src, tgt = GaussianStats(np.zeros(D), 0.05), GaussianStats(np.full(D, 0.05), 0.08)
    h = math.sqrt(2 * D * v)  # the median heuristic's scale
    sig = np.round(np.linspace(0, 0.5, 101), 4)  # the grid ends where U = u(σ_max) ≈ 0.25
    u = np.sqrt(noise_kernel_factor(sig, h, D))
    assert 0.15 < u[-1] < 0.4
    flat = gaussian_objective(src, tgt, sig, h, statistic="mmd")
    assert np.abs(flat.A_norm + flat.B_norm - 1).max() < 0.01
    assert 0.5 - flat.J.min() < 0.005
    for lam in (0.5, 0.3):
        deep = gaussian_objective(src, tgt, sig, h, lam, statistic="mmd2")
        predicted = float(np.interp(-mmd2_minimiser(float(u[-1]), lam), -u, sig))
        assert abs(deep.sigma_star - predicted) <= 0.01, (lam, deep.sigma_star, predicted)
    assert 0.5 - gaussian_objective(src, tgt, sig, h, statistic="mmd2").J.min() > 0.15


def test_measured_objective_mmd_flat_mmd2_interior_minimum():
    """High-dimensional images (768 pixel features): the common-factor picture on data."""
    doms = _domains(n=64)
    source = torch.cat([doms["dark"], doms["bright"]])
    sig = np.round(np.linspace(0, 2, 21), 2)
    kw = dict(repeats=1, seed=0, progress=False, extractor=PixelFeatures(1))
    flat = noise_objective(source, doms["clean"], sig, statistic="mmd", **kw)
    deep = noise_objective(source, doms["clean"], sig, statistic="mmd2", **kw)
    assert np.abs(flat.A_norm + flat.B_norm - 1).max() < 0.15
    assert 0.5 - flat.J.min() < 0.08
    assert 0.5 - deep.J.min() > 0.2
    u = np.sqrt(noise_kernel_factor(sig, deep.choices["h_fixed"], 3 * 16 * 16))
    predicted = float(np.interp(-mmd2_minimiser(float(u[-1])), -u, sig))
    assert abs(deep.sigma_star - predicted) <= 0.15, (deep.sigma_star, predicted)


def test_bootstrap_sigma_star():
    sig = np.linspace(0, 2, 21)
    u = np.exp(-(sig**2) / 2)
    A, B = common_factor_curves(u, "mmd2")
    rng = np.random.default_rng(0)
    A_d = A + 0.01 * rng.standard_normal((5, 21))
    B_d = B + 0.01 * rng.standard_normal((5, 21))
    stars = bootstrap_sigma_star(sig, A_d, B_d, n_boot=50, seed=1)
    assert stars.shape == (50,) and np.isin(stars, sig).all()
    np.testing.assert_array_equal(stars, bootstrap_sigma_star(sig, A_d, B_d, n_boot=50, seed=1))
    target = float(np.interp(-mmd2_minimiser(float(u[-1])), -u, sig))
    assert abs(np.median(stars) - target) <= 0.15
    with pytest.raises(ValueError, match="A_draws"):
        bootstrap_sigma_star(sig, A_d[:, :5], B_d)
