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
    gaussian_mmd2,
    gaussian_objective,
    gaussian_stats,
    kl_isotropic_gaussians,
    minmax,
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
