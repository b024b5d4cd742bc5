"""Synthetic, seeded image degradations for the All-in-One-5 restoration benchmark.

Every degradation maps a batch of clean images ``clean`` of shape ``(B, 3, H, W)`` (or a single
image ``(3, H, W)``) with float values in ``[0, 1]`` to a degraded batch of the same shape, dtype
and device, again with values in ``[0, 1]``::

    degraded = fn(clean, *, generator=None, **params)

Randomness
    All random numbers (per-image parameters, noise, rain drops, depth maps) are drawn on the
    device of ``generator`` (CPU when ``generator`` is an ``int`` seed or ``None``) and then moved
    to the device of ``clean``. Hence the same seed gives the same degradation on CPU and GPU
    (up to floating-point rounding of the convolutions). ``generator=None`` uses torch's global
    CPU random number generator (not reproducible unless you call ``torch.manual_seed``).

Parameters
    Most parameters accept either a number (used for every image of the batch) or a pair
    ``(low, high)``; a pair means that each image of the batch draws its own value uniformly from
    ``[low, high]``. This gives every sample of a dataset a slightly different degradation.

The five tasks (names as in ``TASKS``, the order of the DRDD paper's All-in-One-5 benchmark):
``"low_light"``, ``"rain"``, ``"noise"``, ``"blur"``, ``"haze"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEGRADATIONS",
    "TASKS",
    "Param",
    "blur",
    "check_images",
    "degrade",
    "haze",
    "low_light",
    "make_generator",
    "noise",
    "rain",
]

Param = float | tuple[float, float]
"""A fixed value, or a ``(low, high)`` range from which each image draws its own value."""


# --------------------------------------------------------------------------------------------
# Input validation and random-number helpers
# --------------------------------------------------------------------------------------------


def check_images(
    images: Tensor,
    name: str = "images",
    *,
    allow_unbatched: bool = True,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> tuple[Tensor, bool]:
    """Validate an image batch and return it as a 4-D tensor.

    Args:
        images: float tensor ``(B, 3, H, W)``, or ``(3, H, W)`` if ``allow_unbatched``.
        name: name used in error messages.
        allow_unbatched: accept a single ``(3, H, W)`` image (a batch dimension is added).
        value_range: inclusive ``(low, high)`` the values must lie in; ``None`` skips the check.

    Returns:
        ``(batch, was_unbatched)`` where ``batch`` has shape ``(B, 3, H, W)`` (a view, no copy).

    Raises:
        TypeError: not a tensor, or not a floating-point dtype.
        ValueError: wrong number of dimensions, channels != 3, empty, NaN/inf or values outside
            ``value_range``.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype "
            f"{images.dtype} (convert uint8 images with x.float() / 255)"
        )
    unbatched = images.ndim == 3 and allow_unbatched
    if unbatched:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        expected = "(B, 3, H, W) or (3, H, W)" if allow_unbatched else "(B, 3, H, W)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(
            f"{name} must have 3 (RGB) channels in dimension 1, got shape {tuple(images.shape)}"
        )
    if images.numel() == 0:
        raise ValueError(f"{name} is empty, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if value_range is not None:
        low, high = value_range
        vmin, vmax = float(images.min()), float(images.max())
        if vmin < low or vmax > high:
            raise ValueError(
                f"{name} values must lie in [{low:g}, {high:g}], got range [{vmin:.4g}, {vmax:.4g}]"
            )
    return images, unbatched


def make_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """Turn an ``int`` seed into a fresh CPU ``torch.Generator``; pass generators/None through."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}"
        )
    return torch.Generator(device="cpu").manual_seed(seed)


def _rand(shape: Sequence[int], gen: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 numbers drawn on the generator's device, moved to ``device``."""
    src = gen.device if gen is not None else torch.device("cpu")
    return torch.rand(tuple(shape), generator=gen, device=src).to(device)


def _randn(shape: Sequence[int], gen: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal float32 numbers drawn on the generator's device, moved to ``device``."""
    src = gen.device if gen is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=gen, device=src).to(device)


def _draw(
    value: Param,
    n: int,
    gen: torch.Generator | None,
    device: torch.device,
    name: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
) -> Tensor:
    """Per-image parameter values, shape ``(n,)`` float32.

    A number is repeated; a pair ``(a, b)`` gives ``a + (b - a) * U[0, 1)`` per image. The result
    must lie in ``[low, high]``. A random number is drawn only for pairs, so fixing a parameter
    changes the random stream of the later draws (documented, and deterministic).
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        a, b = float(value[0]), float(value[1])
        if not (math.isfinite(a) and math.isfinite(b)) or a > b:
            raise ValueError(f"{name} range must be finite with low <= high, got {value!r}")
        values = a + (b - a) * _rand((n,), gen, device)
    else:
        a = b = float(value)
        if not math.isfinite(a):
            raise ValueError(f"{name} must be finite, got {value!r}")
        values = torch.full((n,), a, device=device)
    if a < low or b > high:
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")
    return values


def _prepare(clean: Tensor, generator: int | torch.Generator | None):
    """Validate ``clean``; return (float32 batch, unbatched flag, original dtype, generator)."""
    batch, unbatched = check_images(clean, "clean")
    return batch.float(), unbatched, clean.dtype, make_generator(generator)


def _finish(out: Tensor, unbatched: bool, dtype: torch.dtype) -> Tensor:
    """Clip to [0, 1], restore the dtype and remove the batch dim added for a single image."""
    out = out.clamp(0.0, 1.0).to(dtype)
    return out[0] if unbatched else out


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


def _odd(n: float) -> int:
    """Smallest odd integer >= n."""
    k = int(math.ceil(n))
    return k if k % 2 == 1 else k + 1


def _line_kernels(length: Tensor, angle: Tensor, width: float, size: int) -> Tensor:
    """Anti-aliased line segments, one per image: shape ``(B, size, size)``, peak value 1.

    A segment of length ``L`` through the kernel centre with direction ``(sin θ, cos θ)`` in
    (x, y) pixel coordinates (y pointing down; θ measured from the vertical, θ > 0 moves the
    lower end to the right):
    ``k(u, v) = clip(1 − |d_perp| / w, 0, 1) · clip(L/2 + 1/2 − |d_par|, 0, 1)`` where ``d_par``
    and ``d_perp`` are the offsets along and across the segment: a triangular cross-section of
    half-width ``w`` (``w = 1`` is linear-interpolation anti-aliasing; an axis-aligned line then
    covers exactly one row or column) and ``L`` pixels along the segment.
    """
    c = (size - 1) / 2
    coords = torch.arange(size, device=length.device, dtype=torch.float32) - c
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # v: rows (y), u: columns (x)
    s = torch.sin(angle)[:, None, None]
    co = torch.cos(angle)[:, None, None]
    d_par = u * s + v * co
    d_perp = -u * co + v * s
    along = (length[:, None, None] / 2 + 0.5 - d_par.abs()).clamp(0.0, 1.0)
    across = (1.0 - d_perp.abs() / width).clamp(0.0, 1.0)
    return along * across


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """Normalised isotropic Gaussians ``k(u, v) ∝ exp(-(u² + v²) / (2σ²))``: ``(B, size, size)``."""
    c = (size - 1) / 2
    coords = torch.arange(size, device=sigma.device, dtype=torch.float32) - c
    r2 = coords[None, :] ** 2 + coords[:, None] ** 2
    k = torch.exp(-r2[None] / (2 * sigma[:, None, None] ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def _per_image_conv(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve image ``b`` (all its channels) with ``kernels[b]``, no padding.

    Args:
        x: ``(B, C, H, W)``.
        kernels: ``(B, k, k)``.

    Returns:
        ``(B, C, H - k + 1, W - k + 1)`` (a grouped ``conv2d``; it is a correlation, which for
        our symmetric kernels is the same as a convolution).
    """
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(x.reshape(1, b * c, h, w), weight, groups=b * c)
    return out.reshape(b, c, h - k + 1, w - k + 1)


# --------------------------------------------------------------------------------------------
# The five degradations
# --------------------------------------------------------------------------------------------


def low_light(
    clean: Tensor,
    *,
    generator: int | torch.Generator | None = None,
    gamma: Param = (1.5, 2.5),
    scale: Param = (0.2, 0.5),
    shot_noise: float = 0.002,
    read_noise: float = 0.005,
) -> Tensor:
    """Low-light: gamma/scale darkening plus a little signal-dependent (Poisson–Gaussian) noise.

    Model (per image ``γ ~ gamma``, ``s ~ scale``; noise independent per pixel and channel)::

        y   = s · x^γ
        out = clip(y + sqrt(a · y + b²) · n, 0, 1),   n ~ N(0, 1),  a = shot_noise, b = read_noise

    ``a·y`` is the variance of photon shot noise (Poisson approximated by a Gaussian), ``b²`` the
    read-out noise variance.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        gamma: exponent ``γ >= 1`` (darkens mid-tones more than highlights).
        scale: brightness factor ``s`` in ``(0, 1]``.
        shot_noise: shot-noise variance gain ``a >= 0``.
        read_noise: read-noise standard deviation ``b >= 0``.

    Returns:
        Same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    x, unbatched, dtype, gen = _prepare(clean, generator)
    b = x.shape[0]
    g = _draw(gamma, b, gen, x.device, "gamma", low=1.0)
    s = _draw(scale, b, gen, x.device, "scale", low=1e-6, high=1.0)
    if shot_noise < 0 or read_noise < 0:
        raise ValueError(f"noise levels must be >= 0, got {shot_noise=}, {read_noise=}")
    y = s[:, None, None, None] * x.pow(g[:, None, None, None])
    std = torch.sqrt(shot_noise * y + read_noise**2)
    return _finish(y + std * _randn(x.shape, gen, x.device), unbatched, dtype)


def rain(
    clean: Tensor,
    *,
    generator: int | torch.Generator | None = None,
    density: Param = (0.004, 0.01),
    length: Param = (6.0, 14.0),
    angle: Param = (-25.0, 25.0),
    opacity: Param = (0.5, 0.9),
    width: float = 1.2,
) -> Tensor:
    """Rain: sparse random drops smeared into parallel slanted streaks, screen-blended.

    Model (per image: drop density ``ρ``, streak length ``L``, angle ``θ``, opacity ``α``)::

        D   ~ Bernoulli(ρ) · U(0.5, 1)            sparse drop map (one channel), drawn on a canvas
                                                  padded by the kernel radius so streaks enter
                                                  from outside the image
        S   = α · clip(D ⊛ k_{L,θ,w}, 0, 1)       k: anti-aliased line, peak 1, half-width w
                                                  (a motion kernel; ``_line_kernels``)
        out = 1 − (1 − x)(1 − S)                  screen blend (= x + S − x·S), grey streaks

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        density: fraction of pixels that start a drop, in ``[0, 1]``.
        length: streak length in pixels (>= 1).
        angle: slant from the vertical in degrees, in ``[-90, 90]``.
        opacity: streak opacity ``α`` in ``[0, 1]``.
        width: half-width of a streak's triangular cross-section in pixels (> 0).

    Returns:
        Same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    x, unbatched, dtype, gen = _prepare(clean, generator)
    b, _, h, w = x.shape
    rho = _draw(density, b, gen, x.device, "density", low=0.0, high=1.0)
    lengths = _draw(length, b, gen, x.device, "length", low=1.0)
    theta = torch.deg2rad(_draw(angle, b, gen, x.device, "angle", low=-90.0, high=90.0))
    alpha = _draw(opacity, b, gen, x.device, "opacity", low=0.0, high=1.0)
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    size = _odd(float(lengths.max()) + 2)
    pad = size // 2
    canvas = (b, 1, h + 2 * pad, w + 2 * pad)
    hits = _rand(canvas, gen, x.device) < rho[:, None, None, None]
    drops = hits * (0.5 + 0.5 * _rand(canvas, gen, x.device))
    streaks = _per_image_conv(drops, _line_kernels(lengths, theta, width, size)).clamp(0.0, 1.0)
    streaks = alpha[:, None, None, None] * streaks
    return _finish(1 - (1 - x) * (1 - streaks), unbatched, dtype)


def haze(
    clean: Tensor,
    *,
    generator: int | torch.Generator | None = None,
    beta: Param = (0.5, 1.5),
    airlight: Param = (0.75, 0.95),
    tint: float = 0.03,
    min_depth: float = 0.25,
    gradient_weight: float = 0.6,
    cells: int = 4,
) -> Tensor:
    """Haze by the atmospheric scattering model with a smooth synthetic depth map.

    Model (per image: extinction ``β``, airlight ``A`` with a small per-channel tint)::

        g(y)   = 1 − y / (H − 1)                        vertical gradient: top = far
        n(y,x) = bilinear upsampling of a cells×cells grid of U(0, 1)   (low-frequency noise)
        d      = min_depth + (1 − min_depth) · (w · g + (1 − w) · n)    ∈ [min_depth, 1]
        t      = exp(−β · d)                            transmission
        I      = J · t + A · (1 − t)                    J = clean image

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        beta: scattering coefficient ``β >= 0`` (larger = thicker haze).
        airlight: atmospheric light ``A`` in ``[0, 1]``.
        tint: each channel's airlight is ``A + U(−tint, tint)`` (clipped to [0, 1]).
        min_depth: smallest depth, in ``[0, 1]`` (so even the bottom rows get some haze).
        gradient_weight: weight ``w`` in ``[0, 1]`` of the vertical gradient vs. the noise.
        cells: resolution (>= 2) of the low-frequency noise grid.

    Returns:
        Same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    x, unbatched, dtype, gen = _prepare(clean, generator)
    b, _, h, w = x.shape
    beta_t = _draw(beta, b, gen, x.device, "beta", low=0.0)
    a = _draw(airlight, b, gen, x.device, "airlight", low=0.0, high=1.0)
    if not (0 <= min_depth <= 1 and 0 <= gradient_weight <= 1 and tint >= 0 and cells >= 2):
        raise ValueError(
            f"need 0 <= min_depth <= 1, 0 <= gradient_weight <= 1, tint >= 0 and cells >= 2; got "
            f"{min_depth=}, {gradient_weight=}, {tint=}, {cells=}"
        )
    a_rgb = (a[:, None] + tint * (2 * _rand((b, 3), gen, x.device) - 1)).clamp(0.0, 1.0)
    coarse = _rand((b, 1, cells, cells), gen, x.device)
    low_freq = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    rows = torch.linspace(1.0, 0.0, h, device=x.device) if h > 1 else torch.ones(1, device=x.device)
    depth = gradient_weight * rows[None, None, :, None] + (1 - gradient_weight) * low_freq
    depth = min_depth + (1 - min_depth) * depth
    t = torch.exp(-beta_t[:, None, None, None] * depth)
    return _finish(x * t + a_rgb[:, :, None, None] * (1 - t), unbatched, dtype)


def blur(
    clean: Tensor,
    *,
    generator: int | torch.Generator | None = None,
    kind: str = "mixed",
    sigma: Param = (1.0, 2.0),
    length: Param = (5.0, 11.0),
    angle: Param = (0.0, 180.0),
) -> Tensor:
    """Blur by convolution with a Gaussian or a linear-motion kernel (replicate padding).

    Model: ``out = x ⊛ k`` with, per image, either::

        Gaussian: k(u, v) ∝ exp(−(u² + v²) / (2σ²))
        motion:   k ∝ anti-aliased line of length L at angle θ (``_line_kernels``), Σk = 1

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        kind: ``"gaussian"``, ``"motion"`` or ``"mixed"`` (each image picks one with prob. 1/2).
        sigma: Gaussian std in pixels (> 0).
        length: motion length in pixels (>= 1).
        angle: motion direction in degrees (from the vertical).

    Returns:
        Same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    if kind not in ("gaussian", "motion", "mixed"):
        raise ValueError(f"kind must be 'gaussian', 'motion' or 'mixed', got {kind!r}")
    x, unbatched, dtype, gen = _prepare(clean, generator)
    b = x.shape[0]
    sig = _draw(sigma, b, gen, x.device, "sigma", low=1e-3)
    lengths = _draw(length, b, gen, x.device, "length", low=1.0)
    theta = torch.deg2rad(_draw(angle, b, gen, x.device, "angle"))
    use_motion = _rand((b,), gen, x.device) < 0.5
    if kind != "mixed":
        use_motion = torch.full((b,), kind == "motion", device=x.device)
    size = _odd(max(2 * math.ceil(3 * float(sig.max())) + 1, float(lengths.max()) + 2))
    motion = _line_kernels(lengths, theta, 1.0, size)
    motion = motion / motion.sum(dim=(1, 2), keepdim=True)
    kernels = torch.where(use_motion[:, None, None], motion, _gaussian_kernels(sig, size))
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return _finish(_per_image_conv(padded, kernels), unbatched, dtype)


def noise(
    clean: Tensor,
    *,
    generator: int | torch.Generator | None = None,
    sigma: Param = 25.0 / 255.0,
) -> Tensor:
    """Additive white Gaussian noise, clipped: ``out = clip(x + σ·n, 0, 1)``, ``n ~ N(0, 1)``.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        generator: ``int`` seed, ``torch.Generator`` or ``None`` (global RNG).
        sigma: noise std on the [0, 1] scale (default 25/255, the usual denoising benchmark).

    Returns:
        Same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    x, unbatched, dtype, gen = _prepare(clean, generator)
    sig = _draw(sigma, x.shape[0], gen, x.device, "sigma", low=0.0)
    out = x + sig[:, None, None, None] * _randn(x.shape, gen, x.device)
    return _finish(out, unbatched, dtype)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

DEGRADATIONS: dict[str, Callable[..., Tensor]] = {
    "low_light": low_light,
    "rain": rain,
    "noise": noise,
    "blur": blur,
    "haze": haze,
}
"""Task name -> degradation function; the task id of a name is its index in ``TASKS``."""

TASKS: tuple[str, ...] = tuple(DEGRADATIONS)
"""``("low_light", "rain", "noise", "blur", "haze")``: All-in-One-5 task names, in id order."""


def degrade(
    clean: Tensor, task: str, seed: int | torch.Generator | None = 0, **params: object
) -> Tensor:
    """Apply the degradation named ``task`` (a key of ``DEGRADATIONS``) with a seed.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.
        task: one of ``TASKS``.
        seed: ``int`` seed (a fresh CPU generator), ``torch.Generator``, or ``None`` (global RNG).
        **params: forwarded to the degradation function (see its docstring).

    Returns:
        Degraded images, same shape/dtype/device as ``clean``, values in ``[0, 1]``.
    """
    if task not in DEGRADATIONS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(DEGRADATIONS)}")
    return DEGRADATIONS[task](clean, generator=make_generator(seed), **params)
