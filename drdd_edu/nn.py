"""UNet family for RDDM and DRDD: building blocks, :class:`UNet`, :class:`ResidualDenoiser`, presets.

The structure follows the UNet of lucidrains' denoising-diffusion-pytorch, on which the RDDM
reference code is built (RDDM, CVPR 2024, "Reference network"; DRDD reuses it for both stages):

* time: sinusoidal embedding of width ``dim`` → Linear(dim, 4·dim) → GELU → Linear(4·dim, 4·dim);
* stem: 7×7 conv, in_channels → dim;
* encoder, per level (dim_in → dim_out): ``resnet_blocks`` × ResnetBlock(dim_in → dim_in), each
  output kept as a skip (the last one after the level's linear attention, pre-normed, residual),
  then Downsample(dim_in → dim_out) (4×4 stride-2 conv), or a 3×3 conv at the last level;
* bottleneck: ResnetBlock, full multi-head attention (pre-normed, residual), ResnetBlock;
* decoder, per level in reverse: ``resnet_blocks`` × ResnetBlock(dim_out + dim_in → dim_out), each
  fed the concatenation with one skip, linear attention, Upsample(dim_out → dim_in) (nearest ×2 +
  3×3 conv), or a 3×3 conv at the last level;
* head: concatenation with the stem output, ResnetBlock(2·dim → dim), 1×1 conv → out_channels.

ResnetBlock: two [weight-standardised 3×3 conv → GroupNorm(8) → (·(1+scale)+shift) → SiLU] blocks,
the time scale/shift from SiLU → Linear(4·dim, 2·dim_out) applied in the first, plus a 1×1 conv
on the residual path when the channel counts differ.

With dim 64, dim_mults (1, 2, 4, 8), 2 blocks, 4 heads of 32 and the RDDM code's 4×4 stride-2
downsampling conv this is the reference network: 36,261,187 parameters for 6 input and 3 output
channels, 72,522,374 for two UNets (SPEC: 36.3 M per UNet, 72.5 M for two). The later
pixel-unshuffle downsampling (``downsample="pixel_unshuffle"``) gives 35,720,515 instead.

:class:`ResidualDenoiser` wraps one or two UNets with the call conventions of
:mod:`drdd_edu.samplers`: ``model(x_t, t, x_in)`` returns ``pred_res``, ``pred_noise`` or
``(pred_res, pred_noise)``; with ``conditioned=False`` (the DRDD noise stage, trained unpaired)
``model(x_t, t)`` returns ``pred_noise``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .schedules import Schedule

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_TO_MODE",
    "TIME_MODES",
    "DOWNSAMPLE_KINDS",
    "PRESETS",
    "SinusoidalTimeEmbedding",
    "WSConv2d",
    "ConvBlock",
    "ResnetBlock",
    "ChannelLayerNorm",
    "PreNormResidual",
    "LinearAttention",
    "Attention",
    "Downsample",
    "Upsample",
    "UNet",
    "ResidualDenoiser",
    "build_model",
    "count_parameters",
    "downsampling_factor",
    "flops_per_image",
]

Objective = Literal["pred_res", "pred_noise", "pred_res_noise"]
TimeMode = Literal["t", "coefficients"]
OBJECTIVES: tuple[str, ...] = ("pred_res", "pred_noise", "pred_res_noise")
#: the samplers' ``mode`` for each objective (``drdd_edu.samplers.sample(..., mode=...)``)
OBJECTIVE_TO_MODE: dict[str, str] = {
    "pred_res": "res",
    "pred_noise": "noise",
    "pred_res_noise": "res_noise",
}
TIME_MODES: tuple[str, ...] = ("t", "coefficients")
DOWNSAMPLE_KINDS: tuple[str, ...] = ("conv4x4", "pixel_unshuffle")


# ----------------------------------------------------------------------------- building blocks


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (possibly fractional) time (Vaswani et al. 2017).

        emb(t) = [sin(t·ω_0), …, sin(t·ω_{h−1}), cos(t·ω_0), …, cos(t·ω_{h−1})],
        ω_i = θ^{−i/(h−1)},  h = dim/2,  θ = 10000.

    Input shape (B,), float or integer; output shape (B, dim), float32.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"the time embedding width must be even and ≥ 4, got {dim}")
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(theta) * torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t.float()[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat([args.sin(), args.cos()], dim=-1)


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019), used with GroupNorm:

        Ŵ = (W − mean(W)) / sqrt(var(W) + ε),  statistics per output channel over (C_in, k, k).

    The standardisation runs in float32 (also under autocast); ε = 1e-5 for float32 inputs,
    1e-3 otherwise. Shapes as :class:`torch.nn.Conv2d`.
    """

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        w = self.weight.float()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        w = (w - mean) * torch.rsqrt(var + eps)
        return self._conv_forward(x, w.to(self.weight.dtype), self.bias)


class ConvBlock(nn.Module):
    """WS-conv 3×3 → GroupNorm → optional FiLM x·(1 + scale) + shift → SiLU.

    (B, dim_in, H, W) → (B, dim_out, H, W); ``scale_shift`` each of shape (B, dim_out, 1, 1).
    """

    def __init__(self, dim_in: int, dim_out: int, groups: int = 8) -> None:
        super().__init__()
        if dim_out % groups:
            raise ValueError(
                f"GroupNorm({groups}) needs channels divisible by {groups}, got {dim_out}"
            )
        self.proj = WSConv2d(dim_in, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, scale_shift: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """Time-conditioned residual block (DDPM's ResNet block with BigGAN-style scale-shift):

        (scale, shift) = Linear(SiLU(emb));  h = Block₂(Block₁(x; scale, shift));  out = h + R(x)

    with R a 1×1 conv when dim_in ≠ dim_out, else the identity.
    x: (B, dim_in, H, W), emb: (B, time_dim) → (B, dim_out, H, W).
    """

    def __init__(self, dim_in: int, dim_out: int, time_dim: int | None, groups: int = 8) -> None:
        super().__init__()
        self.mlp = (
            nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out))
            if time_dim is not None
            else None
        )
        self.block1 = ConvBlock(dim_in, dim_out, groups)
        self.block2 = ConvBlock(dim_out, dim_out, groups)
        self.res_conv = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        scale_shift = None
        if self.mlp is not None and emb is not None:
            ss = self.mlp(emb)[:, :, None, None]  # (B, 2·dim_out, 1, 1)
            scale_shift = tuple(ss.chunk(2, dim=1))
        h = self.block1(x, scale_shift)
        h = self.block2(h)
        return h + self.res_conv(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W), with a learned gain g of shape (1, C, 1, 1)
    and no bias (as in the reference UNet): out = (x − mean_C) / sqrt(var_C + ε) · g,
    ε = 1e-5 for float32 inputs, 1e-3 otherwise.

    Computed by :func:`torch.nn.functional.layer_norm` on the channels-last view (C is then the
    last, contiguous axis): the same numbers as ``torch.var_mean`` over dim 1 to float32
    rounding, and faster on a CPU, where a reduction over the strided channel axis is slow (the
    tiny preset's training step −11 %, its sampling −33 %: ``benchmarks/README.md``). The output
    has the dtype of ``x`` promoted with g's (float32 for bf16 inputs under autocast, as before)
    and channels-last strides.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.g.view(-1), None, eps)
        return y.permute(0, 3, 1, 2).to(torch.promote_types(x.dtype, self.g.dtype))


class PreNormResidual(nn.Module):
    """x + fn(LayerNorm_C(x)); shape preserved (B, C, H, W)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(self.norm(x))


class LinearAttention(nn.Module):
    """Linear ("efficient") attention of Shen et al. 2021, O(N·d²) in the number of pixels N:

        q ← softmax over the d features, k ← softmax over the N positions,
        context = k·vᵀ (d × d per head),  out = contextᵀ·q,

    followed by a 1×1 conv and a channel LayerNorm. (B, dim, H, W) → (B, dim, H, W).
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        qkv = self.to_qkv(x).reshape(B, 3, self.heads, self.dim_head, H * W)
        q, k, v = qkv.unbind(dim=1)  # each (B, heads, d, N)
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # (B, heads, d, d)
        out = torch.einsum("bhde,bhdn->bhen", context, q)  # (B, heads, d, N)
        return self.to_out(out.reshape(B, self.heads * self.dim_head, H, W))


class Attention(nn.Module):
    """Full multi-head self-attention over the H·W positions (Vaswani et al. 2017):

        out = softmax(q·kᵀ/sqrt(d))·v per head, then a 1×1 conv.

    (B, dim, H, W) → (B, dim, H, W); quadratic in H·W, used at the bottleneck only.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        qkv = self.to_qkv(x).reshape(B, 3, self.heads, self.dim_head, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (B, heads, N, d)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d)
        out = out.transpose(-1, -2).reshape(B, self.heads * self.dim_head, H, W)
        return self.to_out(out)


class Downsample(nn.Module):
    """Halve H and W. (B, dim_in, H, W) → (B, dim_out, H/2, W/2).

    ``kind="conv4x4"``: a 4×4 conv with stride 2 and padding 1 (the RDDM reference code, built on
    an early denoising-diffusion-pytorch); ``kind="pixel_unshuffle"``: a lossless 2×2
    pixel-unshuffle (C → 4C) then a 1×1 conv (later denoising-diffusion-pytorch versions;
    16/4 = 4× fewer weights).
    """

    def __init__(self, dim_in: int, dim_out: int, kind: str = "conv4x4") -> None:
        super().__init__()
        if kind not in DOWNSAMPLE_KINDS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "conv4x4":
            self.conv = nn.Conv2d(dim_in, dim_out, 4, stride=2, padding=1)
        else:
            self.conv = nn.Conv2d(4 * dim_in, dim_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "pixel_unshuffle":
            x = F.pixel_unshuffle(x, 2)  # (B, C, H, W) → (B, 4C, H/2, W/2)
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour ×2 then a 3×3 conv. (B, dim_in, H, W) → (B, dim_out, 2H, 2W)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# ----------------------------------------------------------------------------- UNet


class _Level(nn.Module):
    """One resolution of the encoder or decoder: ResnetBlocks, attention, resampling."""

    def __init__(self, blocks: list[nn.Module], attn: nn.Module, resample: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = attn
        self.resample = resample


class UNet(nn.Module):
    """Time-conditioned UNet (structure in the module docstring).

    Args:
        in_channels: channels of the input ``x`` (3 for an image I_t).
        out_channels: channels of the output (3 per predicted image; 6 for a dual head).
        dim: base width; the levels have dim·dim_mults[i] channels.
        dim_mults: width multipliers, one per resolution level.
        resnet_blocks: ResnetBlocks per level, in the encoder and in the decoder.
        attn_heads, attn_dim_head: heads and width per head of both attention kinds.
        full_attn_bottleneck: full attention between the two bottleneck ResnetBlocks
            (else the identity).
        linear_attn: linear attention at the end of every level (else the identity).
        condition_channels: channels of the conditioning image ``cond`` concatenated to ``x``
            before the stem, e.g. 3 for I_in (RDDM's ``condition=True``); 0 for none.
        time_inputs: number of scalar times per sample (1, or 2 for a net that sees both
            ᾱ_t·T and β̄_t·T); each gets its own sinusoidal embedding, concatenated.
        resnet_groups: GroupNorm groups (8 in the reference).
        downsample: ``"conv4x4"`` (the RDDM reference) or ``"pixel_unshuffle"``, see
            :class:`Downsample`.

    Input H, W must be divisible by 2^(len(dim_mults) − 1).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        resnet_blocks: int = 2,
        attn_heads: int = 4,
        attn_dim_head: int = 32,
        full_attn_bottleneck: bool = True,
        linear_attn: bool = True,
        condition_channels: int = 0,
        time_inputs: int = 1,
        resnet_groups: int = 8,
        downsample: str = "conv4x4",
    ) -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE_KINDS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_KINDS}, got {downsample!r}")
        for name, val, lo in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("dim", dim, 1),
            ("resnet_blocks", resnet_blocks, 1),
            ("attn_heads", attn_heads, 1),
            ("attn_dim_head", attn_dim_head, 1),
            ("condition_channels", condition_channels, 0),
            ("time_inputs", time_inputs, 1),
        ):
            if isinstance(val, bool) or not isinstance(val, int) or val < lo:
                raise ValueError(f"{name} must be an int ≥ {lo}, got {val!r}")
        dim_mults = tuple(dim_mults)
        if not dim_mults or any(int(m) < 1 for m in dim_mults):
            raise ValueError(f"dim_mults must be a non-empty tuple of ints ≥ 1, got {dim_mults}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.condition_channels, self.time_inputs = condition_channels, time_inputs
        self.dim, self.dim_mults = dim, dim_mults
        self.downsample_factor = 2 ** (len(dim_mults) - 1)

        # time MLP: sinusoidal(dim) → Linear(dim, 4dim) → GELU → Linear(4dim, 4dim)
        time_dim = 4 * dim
        self.time_embed = SinusoidalTimeEmbedding(dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(dim * time_inputs, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )

        def resblock(a: int, b: int) -> ResnetBlock:
            return ResnetBlock(a, b, time_dim, resnet_groups)

        def lin_attn(c: int) -> nn.Module:
            if not linear_attn:
                return nn.Identity()
            return PreNormResidual(c, LinearAttention(c, attn_heads, attn_dim_head))

        self.init_conv = nn.Conv2d(in_channels + condition_channels, dim, 7, padding=3)
        dims = [dim, *(dim * int(m) for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        n = len(in_out)

        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == n - 1
            self.downs.append(
                _Level(
                    [resblock(d_in, d_in) for _ in range(resnet_blocks)],
                    lin_attn(d_in),
                    nn.Conv2d(d_in, d_out, 3, padding=1)
                    if last
                    else Downsample(d_in, d_out, downsample),
                )
            )

        mid = dims[-1]
        self.mid_block1 = resblock(mid, mid)
        self.mid_attn = (
            PreNormResidual(mid, Attention(mid, attn_heads, attn_dim_head))
            if full_attn_bottleneck
            else nn.Identity()
        )
        self.mid_block2 = resblock(mid, mid)

        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            last = i == n - 1
            self.ups.append(
                _Level(
                    [resblock(d_out + d_in, d_out) for _ in range(resnet_blocks)],
                    lin_attn(d_out),
                    nn.Conv2d(d_out, d_in, 3, padding=1) if last else Upsample(d_out, d_in),
                )
            )

        self.final_res_block = resblock(2 * dim, dim)
        self.final_conv = nn.Conv2d(dim, out_channels, 1)

    def _check(self, x: Tensor, time: Tensor, cond: Tensor | None) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"UNet input must have shape (B, C, H, W), got {shape}")
        B, C, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got {C}")
        f = self.downsample_factor
        if H % f or W % f:
            raise ValueError(
                f"UNet input H, W must be divisible by 2^(len(dim_mults)−1) = {f}, got {H}×{W}"
            )
        if self.condition_channels:
            if cond is None:
                raise ValueError(f"this UNet needs a {self.condition_channels}-channel cond input")
            if cond.shape != (B, self.condition_channels, H, W):
                raise ValueError(
                    f"cond must have shape {(B, self.condition_channels, H, W)}, got {tuple(cond.shape)}"
                )
        elif cond is not None:
            raise ValueError("this UNet has condition_channels=0 but got a cond input")
        if not isinstance(time, Tensor):
            raise TypeError(f"time must be a tensor, got {type(time).__name__}")
        if time.ndim == 0:
            time = time.expand(B)
        want = (B,) if self.time_inputs == 1 else (B, self.time_inputs)
        if self.time_inputs == 1 and time.shape == (B, 1):
            time = time[:, 0]
        if time.shape != want:
            raise ValueError(f"time must have shape {want}, got {tuple(time.shape)}")
        return time

    def forward(self, x: Tensor, time: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, H, W); time: (B,) (or (B, time_inputs)), float or int;
        cond: (B, condition_channels, H, W) or None → (B, out_channels, H, W)."""
        time = self._check(x, time, cond)
        if cond is not None:
            x = torch.cat([x, cond.to(x.dtype)], dim=1)  # cat(I_t, I_in), RDDM's condition
        t = time.reshape(x.shape[0], -1)  # (B, k)
        emb = torch.cat([self.time_embed(t[:, j]) for j in range(t.shape[1])], dim=-1)
        emb = self.time_mlp(emb)  # (B, 4·dim)

        x = self.init_conv(x)
        r = x
        skips: list[Tensor] = []
        for level in self.downs:
            for j, block in enumerate(level.blocks):
                x = block(x, emb)
                if j == len(level.blocks) - 1:
                    x = level.attn(x)
                skips.append(x)
            x = level.resample(x)

        x = self.mid_block1(x, emb)
        x = self.mid_attn(x)
        x = self.mid_block2(x, emb)

        for level in self.ups:
            for block in level.blocks:
                x = block(torch.cat([x, skips.pop()], dim=1), emb)
            x = level.attn(x)
            x = level.resample(x)

        x = self.final_res_block(torch.cat([x, r], dim=1), emb)
        return self.final_conv(x)


# ----------------------------------------------------------------------------- RDDM / DRDD wrapper


class ResidualDenoiser(nn.Module):
    """RDDM/DRDD network: one or two UNets predicting I_res and/or ε (RDDM §3, DRDD §3).

    Args:
        objective: ``"pred_res"`` (SM-Res), ``"pred_noise"`` (SM-N) or ``"pred_res_noise"``
            (SM-Res-N, both outputs).
        two_networks: for ``"pred_res_noise"`` only: two UNets, one per output (RDDM's
            ``num_unet=2``), instead of one UNet with a dual head of 2·channels outputs.
        conditioned: feed cat(I_t, I_in) (2·channels inputs); ``False`` for the DRDD noise
            stage (I_t only, trained unpaired), called as ``model(x_t, t)``.
        time_mode: ``"t"`` feeds the integer timestep; ``"coefficients"`` feeds ᾱ_t·T to the
            residual net and β̄_t·T to the noise net (RDDM's partially path-independent
            networks); a one-UNet dual head then sees both (two time inputs).
        schedule: the :class:`~drdd_edu.schedules.Schedule`; required for ``"coefficients"``,
            optional for ``"t"`` (then only used to check 0 ≤ t < T).
        channels: image channels (3).
        unet_kwargs: passed to :class:`UNet` (dim, dim_mults, resnet_blocks, …).

    ``forward(x_t, t, x_in)`` follows :mod:`drdd_edu.samplers`; use
    ``sample(model, …, mode=model.mode)``.
    """

    def __init__(
        self,
        objective: Objective = "pred_res_noise",
        two_networks: bool = False,
        conditioned: bool = True,
        time_mode: TimeMode = "t",
        schedule: Schedule | None = None,
        channels: int = 3,
        **unet_kwargs: Any,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if time_mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {TIME_MODES}, got {time_mode!r}")
        if two_networks and objective != "pred_res_noise":
            raise ValueError(
                f"two_networks=True needs objective 'pred_res_noise' (one net per output), got {objective!r}"
            )
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        if time_mode == "coefficients" and schedule is None:
            raise ValueError(
                "time_mode='coefficients' conditions on ᾱ_t·T and β̄_t·T and needs the schedule "
                "(pass schedule=...)"
            )
        for key in ("in_channels", "out_channels", "condition_channels", "time_inputs"):
            if key in unet_kwargs:
                raise TypeError(f"{key} is set by ResidualDenoiser, do not pass it")
        self.objective, self.two_networks = objective, bool(two_networks)
        self.conditioned, self.time_mode, self.channels = bool(conditioned), time_mode, channels
        cond_ch = channels if conditioned else 0
        self.T = schedule.T if schedule is not None else None
        if schedule is not None:
            T = schedule.T
            # conditioning times of RDDM's path-independent nets: ᾱ_t·T and β̄_t·T, shape (T,)
            self.register_buffer("time_res", (schedule.alphas_cumsum * T).float(), persistent=False)
            self.register_buffer(
                "time_noise", (schedule.betas_cumsum * T).float(), persistent=False
            )

        def unet(out_channels: int, time_inputs: int = 1) -> UNet:
            return UNet(
                in_channels=channels,
                out_channels=out_channels,
                condition_channels=cond_ch,
                time_inputs=time_inputs,
                **unet_kwargs,
            )

        if self.two_networks:
            self.unet_res = unet(channels)
            self.unet_noise = unet(channels)
        elif objective == "pred_res_noise":
            self.unet = unet(2 * channels, 2 if time_mode == "coefficients" else 1)
        else:
            self.unet = unet(channels)

    @property
    def mode(self) -> str:
        """The samplers' mode for this objective: ``"res"``, ``"noise"`` or ``"res_noise"``."""
        return OBJECTIVE_TO_MODE[self.objective]

    def _times(self, t: int | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(time for the residual net, time for the noise net), each shape (B,)."""
        B = x.shape[0]
        if isinstance(t, bool):
            raise TypeError("t must be an int or a tensor, got bool")
        if isinstance(t, (int, float)):
            t = torch.tensor(t, device=x.device)
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be an int or a tensor, got {type(t).__name__}")
        t = t.to(x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must be a scalar or have shape ({B},), got {tuple(t.shape)}")
        if self.time_mode == "t":
            if self.T is not None and not t.is_floating_point():
                _check_range(t, self.T)
            return t, t
        if t.is_floating_point():
            raise TypeError("time_mode='coefficients' indexes the schedule: t must be integer")
        _check_range(t, self.T)
        t = t.long()
        return self.time_res[t], self.time_noise[t]

    def forward(
        self, x_t: Tensor, t: int | Tensor, x_in: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Predict from the state I_t.

        Args:
            x_t: I_t, shape (B, channels, H, W).
            t: timesteps, shape (B,) or a scalar (long; float is allowed with ``time_mode="t"``).
            x_in: the degraded input I_in, shape (B, channels, H, W); required when
                ``conditioned``, ignored otherwise (so that an unconditioned model can also
                generate through ``sample`` with I_in = 0).

        Returns:
            ``pred_res`` or ``pred_noise`` (B, channels, H, W), or the tuple
            ``(pred_res, pred_noise)`` for ``"pred_res_noise"``; in the dtype of ``x_t``.
        """
        if not isinstance(x_t, Tensor) or x_t.ndim != 4:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must have shape (B, C, H, W), got {shape}")
        if x_t.shape[1] != self.channels:
            raise ValueError(f"x_t must have {self.channels} channels, got {x_t.shape[1]}")
        cond = None
        if self.conditioned:
            if x_in is None:
                raise ValueError("this model is conditioned on I_in: call model(x_t, t, x_in)")
            if not isinstance(x_in, Tensor) or x_in.shape != x_t.shape:
                shape = tuple(x_in.shape) if isinstance(x_in, Tensor) else type(x_in).__name__
                raise ValueError(f"x_in must have the shape of x_t {tuple(x_t.shape)}, got {shape}")
            cond = x_in
        t_res, t_noise = self._times(t, x_t)
        dtype = x_t.dtype
        if self.two_networks:
            pred_res = self.unet_res(x_t, t_res, cond).to(dtype)
            pred_noise = self.unet_noise(x_t, t_noise, cond).to(dtype)
            return pred_res, pred_noise
        if self.objective == "pred_res_noise":
            time = (
                torch.stack([t_res, t_noise], dim=1) if self.time_mode == "coefficients" else t_res
            )
            out = self.unet(x_t, time, cond).to(dtype)
            return out[:, : self.channels], out[:, self.channels :]
        time = t_res if self.objective == "pred_res" else t_noise
        return self.unet(x_t, time, cond).to(dtype)


def _check_range(t: Tensor, T: int | None) -> None:
    if T is not None and ((t < 0).any() or (t >= T).any()):
        raise ValueError(
            f"timesteps must lie in 0 … {T - 1} (T = {T}), got min {int(t.min())}, max {int(t.max())}"
        )


# ----------------------------------------------------------------------------- presets

#: UNet settings per preset. ``rddm`` is the RDDM/DRDD reference network (36.3 M per UNet).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU, 32² images: 0.24 M per UNet, < 1 M even for two UNets
    "tiny": dict(
        dim=16,
        dim_mults=(1, 2, 2),
        resnet_blocks=1,
        attn_heads=2,
        attn_dim_head=16,
        full_attn_bottleneck=True,
        linear_attn=True,
    ),
    # 3.27 M per UNet (6.54 M for two): CPU-trainable at 32²–64², quick GPU runs
    "small": dict(
        dim=32,
        dim_mults=(1, 2, 2, 4),
        resnet_blocks=2,
        attn_heads=4,
        attn_dim_head=32,
        full_attn_bottleneck=True,
        linear_attn=True,
    ),
    # the reference (RDDM code, CVPR 2024; DRDD): lucidrains' UNet with these settings
    "rddm": dict(
        dim=64,
        dim_mults=(1, 2, 4, 8),
        resnet_blocks=2,
        attn_heads=4,
        attn_dim_head=32,
        full_attn_bottleneck=True,
        linear_attn=True,
    ),
}


def build_model(
    preset: str = "tiny",
    objective: Objective = "pred_res_noise",
    two_networks: bool = False,
    conditioned: bool = True,
    time_mode: TimeMode = "t",
    schedule: Schedule | None = None,
    channels: int = 3,
    **overrides: Any,
) -> ResidualDenoiser:
    """A :class:`ResidualDenoiser` from a :data:`PRESETS` entry; ``overrides`` replace UNet settings.

    Example: ``build_model("rddm", objective="pred_res", two_networks=False)`` is the
    36.3 M-parameter reference UNet (6 channels in, 3 out).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(PRESETS)}")
    kwargs = {**PRESETS[preset], **overrides}
    return ResidualDenoiser(
        objective=objective,
        two_networks=two_networks,
        conditioned=conditioned,
        time_mode=time_mode,
        schedule=schedule,
        channels=channels,
        **kwargs,
    )


def downsampling_factor(preset: str) -> int:
    """How much a :data:`PRESETS` UNet shrinks H and W at its bottleneck (2 per level after the
    first): training and test image sides must be multiples of it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(PRESETS)}")
    return 2 ** (len(PRESETS[preset]["dim_mults"]) - 1)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``; only those with requires_grad if asked."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def flops_per_image(model: nn.Module, size: int | tuple[int, int] = 256) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on one image of ``size``, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls, attention; not
    the elementwise ops). For :class:`ResidualDenoiser` all its UNets count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (size, size) if isinstance(size, int) else size
    p = next(model.parameters())
    if isinstance(model, ResidualDenoiser):
        x = torch.zeros(1, model.channels, h, w, device=p.device, dtype=p.dtype)
        args: tuple[Any, ...] = (x, torch.zeros(1, dtype=torch.long, device=p.device))
        if model.conditioned:
            args = (*args, x)
    elif isinstance(model, UNet):
        x = torch.zeros(1, model.in_channels, h, w, device=p.device, dtype=p.dtype)
        tt = torch.zeros(
            (1,) if model.time_inputs == 1 else (1, model.time_inputs), device=p.device
        )
        cond = (
            torch.zeros(1, model.condition_channels, h, w, device=p.device, dtype=p.dtype)
            if model.condition_channels
            else None
        )
        args = (x, tt, cond)
    else:
        raise TypeError(
            f"flops_per_image needs a UNet or ResidualDenoiser, got {type(model).__name__}"
        )
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*args)
    return int(counter.get_total_flops())
