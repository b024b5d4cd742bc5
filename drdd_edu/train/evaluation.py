"""Evaluating a trained network: restoring held-out test images, PSNR/SSIM, loading a
checkpoint's network."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .. import checkpoint as ckpt_io
from ..diffusion import (
    from_model_range,
    to_model_range,
)
from ..nn import ResidualDenoiser, build_model
from ..samplers import sample, sample_drdd, sample_drdd_exact, sample_noise_stage
from ..schedules import Schedule
from .batches import _STREAM_EVAL, step_seed
from .config import TrainConfig
from .distributed import resolve_device

# ----------------------------------------------------------------------------- evaluation


def centre_crop(x: Tensor, size: int | None) -> Tensor:
    """The central ``size``² window of images x (..., H, W) (x itself when ``size`` is None or
    already H); patches smaller than ``size`` raise ``ValueError``."""
    if size is None or x.shape[-1] == size:
        return x
    if x.shape[-1] < size:
        raise ValueError(f"test patches are {x.shape[-1]}² but image_size is {size}")
    off = (x.shape[-1] - size) // 2
    return x[..., off : off + size, off : off + size]


def _test_batches(test_src: Any, cfg: TrainConfig, n: int, device: torch.device) -> list[Any]:
    """Fixed test images: ``n`` test pairs spread evenly over the test split (all of them when
    ``n`` ≥ its size; the split is ordered by source photo, so its first ``n`` pairs would all
    come from one photo), or synthetic pairs; centre-cropped."""
    S = cfg.image_size
    idx = _test_indices(test_src, n)
    if test_src is None:
        g = torch.Generator().manual_seed(step_seed(cfg.seed, _STREAM_EVAL, 0))
        clean = torch.rand((n, 3, S, S), generator=g)
        deg = (clean + 0.1 * torch.randn((n, 3, S, S), generator=g)).clamp(0, 1)
    else:
        for name in ("clean", "degraded"):
            arr = getattr(test_src, name, None)
            if not isinstance(arr, Tensor) or arr.dtype != torch.uint8:
                got = arr.dtype if isinstance(arr, Tensor) else type(arr).__name__
                raise TypeError(
                    f"the test source's {name!r} images must be uint8 (0–255, as the trainer's "
                    f"test_src holds them), got {got}; for a PairedPatches use its clean_u8 / "
                    "degraded_u8, or the Trainer's test_src"
                )
        clean = centre_crop(test_src.clean[idx].float() / 255.0, S)
        deg = centre_crop(test_src.degraded[idx].float() / 255.0, S)
    bs = max(1, cfg.batch_size)
    return [
        (clean[i : i + bs].to(device), deg[i : i + bs].to(device)) for i in range(0, len(clean), bs)
    ]


def _test_indices(test_src: Any, n: int) -> Tensor | None:
    """Positions in ``test_src`` of the ``n`` test images :func:`_test_batches` uses, (n,)
    int64 (evenly spaced; all of them when ``n`` ≥ its size); None for synthetic pairs."""
    if test_src is None:
        return None
    total = len(test_src.clean)
    return torch.linspace(0, total - 1, n).round().long() if n < total else torch.arange(total)


def eval_task_names(test_src: Any, n: int) -> list[str] | None:
    """The task (degradation) name of each of the ``n`` images :func:`restore_test_images`
    restores, in order; None when the source carries no task ids (synthetic pairs, or an object
    without a ``task`` tensor). Names come from ``test_src.task_names`` when it has them, else
    :data:`drdd_edu.degradations.TASKS` (the All-in-One-5 order)."""
    idx = _test_indices(test_src, n)
    task = getattr(test_src, "task", None)
    if idx is None or task is None:
        return None
    from ..degradations import TASKS

    names = tuple(getattr(test_src, "task_names", ()) or TASKS)
    ids = torch.as_tensor(task)[idx].tolist()
    bad = [k for k in ids if not 0 <= k < len(names)]
    if bad:
        raise ValueError(f"test task id {bad[0]} is not an index into the tasks {list(names)}")
    return [names[k] for k in ids]


@torch.no_grad()
def restore_test_images(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    test_src: Any,
    n_images: int = 16,
    sampling_steps: int = 5,
    device: torch.device | str = "cpu",
    schedule: Schedule | None = None,
    noise_model: ResidualDenoiser | None = None,
    noise_cfg: TrainConfig | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Restore the first ``n_images`` held-out test images with the config's stage.

    * ``rddm``: :func:`~drdd_edu.samplers.sample` with ``sampling_steps`` steps (an
      ``auto_res_noise`` network is built as ``pred_res`` and so sampled as SM-Res).
    * ``drdd_residual`` with ``noise_model``: the full DRDD sampler
      (:func:`~drdd_edu.samplers.sample_drdd`, ``sampling_steps`` steps per stage); without
      one, only the residual stage runs and the injected noise σ·z is then subtracted
      (an oracle denoiser): this scores the residual network alone.
    * ``drdd_noise``: denoise the clean test images after adding noise of strength σ.

    Sampling noise comes from a generator seeded by the config's seed (repeatable).

    Returns:
        ``(clean, start, restored)``, each (n_images, 3, S, S) on [0, 1]: the targets, the
        network's input (degraded, or noisy for ``drdd_noise``; clamped) and the output.
    """
    if cfg.generation:
        raise ValueError(
            "a generation config (I_in = 0) has no paired test targets: sample it with "
            "drdd_edu.samplers.sample(model, zeros, schedule, steps) instead"
        )
    device = torch.device(device)
    sch = schedule or cfg.make_schedule()
    sigma = cfg.noise_strength
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, _STREAM_EVAL, 1))
    cleans, starts, outs = [], [], []
    for clean01, deg01 in _test_batches(test_src, cfg, n_images, device):
        x0, x_in = to_model_range(clean01), to_model_range(deg01)
        start = deg01
        if cfg.stage == "rddm":
            out = sample(model, x_in, sch, sampling_steps, mode=model.mode, generator=g)
        elif cfg.stage == "drdd_noise":
            noisy = x0 + sigma * torch.randn(x0.shape, generator=g, device=device)
            out = sample_noise_stage(
                model, noisy, sch, sigma, sampling_steps, x_in, cfg.noise_conditioned
            )
            start = from_model_range(noisy)
        elif noise_model is not None:
            nsch = noise_cfg.make_schedule() if noise_cfg else sch
            out = sample_drdd(
                model,
                noise_model,
                x_in,
                sch,
                nsch,
                residual_steps=sampling_steps,
                noise_steps=sampling_steps,
                noise_strength=sigma,
                generator=g,
                noise_conditioned=bool(noise_cfg and noise_cfg.noise_conditioned),
            )
        else:  # residual stage alone, then subtract the known injected noise (drdd_exact)
            out = sample_drdd_exact(model, x_in, sch, sampling_steps, sigma, generator=g)
        cleans.append(clean01)
        starts.append(start.clamp(0, 1))
        outs.append(from_model_range(out.float()))
    model.train(was_training)
    return torch.cat(cleans), torch.cat(starts), torch.cat(outs)


def evaluate_model(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    test_src: Any,
    n_images: int = 16,
    sampling_steps: int = 5,
    device: torch.device | str = "cpu",
    schedule: Schedule | None = None,
    noise_model: ResidualDenoiser | None = None,
    noise_cfg: TrainConfig | None = None,
    per_task: bool = False,
) -> dict[str, Any]:
    """Mean PSNR (dB) and SSIM of :func:`restore_test_images`' output against the clean
    targets (``psnr``, ``ssim``) and of the unrestored input (``psnr_in``, ``ssim_in``), over
    all ``n_images`` images (per-image scores averaged).

    With ``per_task=True`` the result also holds ``"tasks"``: ``{task name: {"psnr", "ssim",
    "psnr_in", "ssim_in", "n"}}``, the same means over each task's images (``n`` of them), in
    the order of the task list; empty when the test source carries no task ids (synthetic)."""
    from ..metrics import psnr, ssim

    clean, start, restored = restore_test_images(
        model, cfg, test_src, n_images, sampling_steps, device, schedule, noise_model, noise_cfg
    )
    scores = {
        "psnr": psnr(restored, clean).cpu(),
        "ssim": ssim(restored, clean).cpu(),
        "psnr_in": psnr(start, clean).cpu(),
        "ssim_in": ssim(start, clean).cpu(),
    }
    out: dict[str, Any] = {k: float(v.mean()) for k, v in scores.items()}
    if per_task:
        names = eval_task_names(test_src, len(clean)) or []
        order = list(dict.fromkeys(getattr(test_src, "task_names", ()) or ())) or sorted(
            set(names), key=names.index
        )
        tasks: dict[str, dict[str, float | int]] = {}
        for name in order:
            mask = torch.tensor([t == name for t in names], dtype=torch.bool)
            if bool(mask.any()):
                tasks[name] = {k: float(v[mask].mean()) for k, v in scores.items()}
                tasks[name]["n"] = int(mask.sum())
        out["tasks"] = tasks
    return out


def model_from_checkpoint(
    path: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[ResidualDenoiser, TrainConfig, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its EMA (or raw) weights.

    Returns ``(model in eval mode, its TrainConfig, the checkpoint dict)``.
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    ck = ckpt_io.load_checkpoint(path, map_location=device)
    try:
        cfg = TrainConfig.from_dict(ck["config_dict"])
    except (ValueError, TypeError) as err:
        raise ckpt_io.CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from err
    model = build_model(
        cfg.preset,
        objective=cfg.model_objective,  # type: ignore[arg-type]
        two_networks=cfg.two_networks,
        conditioned=cfg.conditioned,
        time_mode=cfg.time_mode,  # type: ignore[arg-type]
        schedule=cfg.make_schedule(),
    ).to(device)
    key = "ema" if use_ema else "model"
    try:
        model.load_state_dict(ck[key])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        why = _weights_mismatch(model, ck[key]) or f"{type(err).__name__}"
        raise ckpt_io.CheckpointError(
            f"checkpoint {path}: its {key} weights do not fit the network its config describes "
            f"(preset {cfg.preset!r}, objective {cfg.objective!r}, stage {cfg.stage!r}): {why}; "
            "it was edited or written by another drdd_edu version: use a checkpoint written "
            "by this version's drdd-edu train"
        ) from err
    return model.eval(), cfg, ck


def _weights_mismatch(module: nn.Module, state: Any) -> str | None:
    """One line saying how ``state`` (a stored state dict) differs from ``module``'s own (tensor
    shapes, missing and unexpected names), or None when it would load."""
    if not isinstance(state, Mapping):
        return f"the stored weights are a {type(state).__name__}, not a dict of tensors"
    own = module.state_dict()
    shape = [
        k
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if shape:
        k = shape[0]
        parts.append(
            f"{len(shape)} tensors differ in shape (e.g. {k}: stored "
            f"{tuple(getattr(state[k], 'shape', ()))}, network {tuple(own[k].shape)})"
        )
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return "; ".join(parts) or None
