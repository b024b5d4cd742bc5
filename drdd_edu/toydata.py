"""Small seeded data for the notebooks: 2-D point clouds and bundled photographs.

Nothing is downloaded: points come from scikit-learn's generators, photographs from
images that ship inside scikit-image. Images are returned as (B, 3, H, W) float tensors
in [0, 1]; use :func:`drdd_edu.diffusion.to_model_range` for the diffusion scale [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["toy_points", "bundled_image", "BUNDLED_IMAGES", "darken"]

BUNDLED_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")


def toy_points(n: int, kind: str = "moons", seed: int = 0) -> Tensor:
    """``n`` 2-D points shaped (n, 2, 1, 1) (a 2-pixel "image"), roughly within [-1, 1].

    kind: ``"moons"`` (sklearn.datasets.make_moons, noise 0.05) or ``"blobs"`` (three clusters).
    """
    from sklearn.datasets import make_blobs, make_moons

    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if kind == "moons":
        pts, _ = make_moons(n_samples=n, noise=0.05, random_state=seed)
        pts = (pts - np.array([0.5, 0.25])) / np.array([1.6, 0.8])
    elif kind == "blobs":
        pts, _ = make_blobs(
            n_samples=n,
            centers=[[-0.6, -0.5], [0.6, -0.5], [0.0, 0.6]],
            cluster_std=0.08,
            random_state=seed,
        )
    else:
        raise ValueError(f"kind must be 'moons' or 'blobs', got {kind!r}")
    return torch.as_tensor(pts, dtype=torch.float32).reshape(n, 2, 1, 1)


def bundled_image(name: str = "astronaut", size: int = 64) -> Tensor:
    """A photograph bundled with scikit-image, resized to (1, 3, size, size), values in [0, 1]."""
    import skimage.data
    from skimage.transform import resize

    if name not in BUNDLED_IMAGES:
        raise ValueError(f"name must be one of {BUNDLED_IMAGES}, got {name!r}")
    if size < 8:
        raise ValueError(f"size must be ≥ 8, got {size}")
    img = getattr(skimage.data, name)()
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side, :3]
    img = resize(img, (size, size), anti_aliasing=True, preserve_range=False).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).clamp(0, 1).contiguous()


def darken(img01: Tensor, scale: float = 0.35, gamma: float = 1.6) -> Tensor:
    """A simple deterministic low-light degradation: scale·x^gamma, same shape, in [0, 1]."""
    return (scale * img01.clamp(0, 1) ** gamma).clamp(0, 1)
