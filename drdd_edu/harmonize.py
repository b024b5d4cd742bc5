"""Noise as a domain harmoniser: features of noisy degraded images, MMD curves, 2-D embeddings.

DRDD's claim (Prop. 3.1 and §4): adding the same Gaussian noise to images from different
degradation domains pulls their distributions together. Here we measure that:

1. take images of each domain (values in [0, 1], shape (N, 3, H, W)), map them to the
   diffusion scale [-1, 1] and add noise of strength σ (variance-exploding, as DRDD's
   sampler starts at I_in + σ·z: the image is not scaled down);
2. extract features: raw pixels (average-pooled), a fixed random convolutional encoder,
   or any callable (e.g. the encoder of a trained model);
3. compare domains with the kernel two-sample statistic MMD² (:func:`drdd_edu.metrics.mmd2`)
   as σ grows, and embed the features in 2-D (UMAP, or PCA as the fast fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .degradations import check_images
from .diffusion import to_model_range
from .metrics import median_bandwidth, mmd2

__all__ = [
    "FeatureExtractor",
    "PixelFeatures",
    "RandomConvEncoder",
    "add_noise",
    "features_at_noise",
    "HarmonisationCurves",
    "harmonisation_curves",
    "embed_2d",
]

FeatureExtractor = Callable[[Tensor], Tensor]
"""Maps noisy images (B, 3, H, W) on the [-1, 1] scale to features (B, D)."""


class PixelFeatures:
    """Raw pixels, average-pooled by ``pool`` (1 = every pixel): (B, 3, H, W) → (B, 3·H·W/pool²)."""

    def __init__(self, pool: int = 2) -> None:
        if not (isinstance(pool, int) and pool >= 1):
            raise ValueError(f"pool must be an int ≥ 1, got {pool!r}")
        self.pool = pool

    def __call__(self, x: Tensor) -> Tensor:
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return x.flatten(1)

    def __repr__(self) -> str:
        return f"PixelFeatures(pool={self.pool})"


class RandomConvEncoder(nn.Module):
    """A fixed, randomly initialised convolutional encoder (seeded): a cheap stand-in for the
    feature extractor of a trained network. Three stride-2 conv + GELU stages, then global
    average and standard-deviation pooling: (B, 3, H, W) → (B, 2·width)."""

    def __init__(self, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        chans = [3, width // 2, width, width]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1) for i in range(3)
        )
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
                )
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()
        self.seed = seed

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.gelu(conv(x))
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def add_noise(images01: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """I + σ·ε on the [-1, 1] scale: (B, 3, H, W) in [0, 1] → (B, 3, H, W), unclipped."""
    check_images(images01, "images01", allow_unbatched=False)
    if not (sigma >= 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number ≥ 0, got {sigma}")
    x = to_model_range(images01)
    if sigma == 0:
        return x
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return x + sigma * eps


@torch.no_grad()
def features_at_noise(
    images01: Tensor,
    sigma: float,
    extractor: FeatureExtractor,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Features of the noisy images, shape (N, D), float32.

    The noise (std σ) is added to the pixels *before* feature extraction, so features see
    transformed noise: with :class:`PixelFeatures` (``pool = p``) each feature carries noise of
    std σ/p — pass that to the feature-space formulas of :mod:`drdd_edu.theory`.
    """
    out = []
    for start in range(0, images01.shape[0], batch_size):
        chunk = add_noise(images01[start : start + batch_size], sigma, generator)
        out.append(extractor(chunk).float().flatten(1))
    return torch.cat(out)


@dataclass
class HarmonisationCurves:
    """MMD² between every pair of domains at every noise level.

    Attributes:
        sigmas: noise strengths, shape (S,).
        names: domain names.
        pairs: (name_a, name_b) for each row of ``mmd2``.
        mmd2: unbiased MMD², shape (P, S).
        bandwidths: RBF bandwidth used at each σ, shape (S,).
        bandwidth_rule: ``"median"`` (pooled median heuristic at every σ), ``"fixed"`` (the
            median at the smallest σ, kept for all σ) or ``"given"``.
    """

    sigmas: np.ndarray
    names: list[str]
    pairs: list[tuple[str, str]]
    mmd2: np.ndarray
    bandwidths: np.ndarray
    bandwidth_rule: str
    extractor: str = field(default="")

    def curve(self, a: str, b: str) -> np.ndarray:
        """MMD² between domains ``a`` and ``b`` against σ, shape (S,)."""
        for i, (p, q) in enumerate(self.pairs):
            if {p, q} == {a, b}:
                return self.mmd2[i]
        raise KeyError(f"no pair ({a!r}, {b!r}); domains are {self.names}")

    def mean_between(self, names: Sequence[str]) -> np.ndarray:
        """The mean MMD² over all pairs among ``names``, shape (S,)."""
        rows = [self.curve(a, b) for a, b in combinations(names, 2)]
        return np.mean(rows, axis=0)


def harmonisation_curves(
    domains: Mapping[str, Tensor],
    sigmas: Sequence[float],
    extractor: FeatureExtractor | None = None,
    bandwidth: str | float = "median",
    seed: int = 0,
    progress: bool = True,
) -> HarmonisationCurves:
    """MMD² between every pair of domains as the noise strength grows.

    Args:
        domains: name → images (N_k, 3, H, W) in [0, 1] (e.g. one entry per degradation and a
            ``"clean"`` entry for the target domain).
        sigmas: noise strengths σ on the [-1, 1] scale, e.g. ``np.linspace(0, 1.6, 9)``.
        extractor: features of noisy images (default :class:`PixelFeatures` with pool 2).
        bandwidth: ``"median"`` — pooled median heuristic recomputed at each σ (scale-free
            comparison); ``"fixed"`` — the median at the first σ, kept (an absolute
            comparison, in which distances shrink relative to the growing noise); or a number.
        seed: seeds the noise (each domain and σ gets its own stream).
    """
    from tqdm.auto import tqdm

    if len(domains) < 2:
        raise ValueError(f"need at least 2 domains, got {len(domains)}")
    sigmas = np.asarray(sigmas, dtype=float)
    if sigmas.ndim != 1 or sigmas.size == 0 or (sigmas < 0).any() or not np.isfinite(sigmas).all():
        raise ValueError("sigmas must be a non-empty 1-D sequence of finite numbers ≥ 0")
    if isinstance(bandwidth, str) and bandwidth not in ("median", "fixed"):
        raise ValueError(f"bandwidth must be 'median', 'fixed' or a number, got {bandwidth!r}")
    extractor = extractor if extractor is not None else PixelFeatures(2)
    names = list(domains)
    pairs = list(combinations(names, 2))
    values = np.zeros((len(pairs), sigmas.size))
    widths = np.zeros(sigmas.size)
    fixed_h = None
    for j, sigma in enumerate(tqdm(sigmas, desc="noise levels", disable=not progress)):
        feats = {
            name: features_at_noise(
                imgs,
                float(sigma),
                extractor,
                torch.Generator().manual_seed(seed * 7919 + 104729 * j + k),
            )
            for k, (name, imgs) in enumerate(domains.items())
        }
        if isinstance(bandwidth, (int, float)):
            h = float(bandwidth)
        elif bandwidth == "fixed" and fixed_h is not None:
            h = fixed_h
        else:
            h = median_bandwidth(torch.cat(list(feats.values())))
            fixed_h = h if fixed_h is None else fixed_h
        widths[j] = h
        for i, (a, b) in enumerate(pairs):
            values[i, j] = float(mmd2(feats[a], feats[b], bandwidth=h))
    rule = "given" if isinstance(bandwidth, (int, float)) else bandwidth
    return HarmonisationCurves(sigmas, names, pairs, values, widths, rule, repr(extractor))


def embed_2d(
    features: Mapping[str, Tensor],
    method: str = "umap",
    random_state: int = 0,
    n_neighbors: int = 15,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the pooled features of all domains in 2-D.

    Args:
        features: name → features (N_k, D).
        method: ``"umap"`` (umap-learn, fixed ``random_state``; ~25 s of numba JIT the first
            time in a fresh process) or ``"pca"`` (scikit-learn; instant).
    Returns:
        coords (ΣN_k, 2) and labels (ΣN_k,) holding the domain names.
    """
    if not features:
        raise ValueError("features is empty")
    x = np.concatenate(
        [f.detach().cpu().double().numpy().reshape(f.shape[0], -1) for f in features.values()]
    )
    labels = np.concatenate([[name] * f.shape[0] for name, f in features.items()])
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(x), labels
    if method == "umap":
        try:
            import umap
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError(
                'method="umap" needs umap-learn (pip install -e ".[notebooks]"); use method="pca"'
            ) from err
        reducer = umap.UMAP(
            n_components=2, n_neighbors=n_neighbors, random_state=random_state, n_jobs=1
        )
        threads = torch.get_num_threads()
        try:
            return reducer.fit_transform(x), labels
        finally:
            # numba/OpenMP inside UMAP resets torch's thread count as a side effect; on a busy
            # 2-core machine later small-tensor torch work then slows down 10-100x
            torch.set_num_threads(threads)
    raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
