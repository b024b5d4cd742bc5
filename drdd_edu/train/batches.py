"""Deterministic training batches: per-(seed, step) random streams, the data sources of each
stage on the device, crops."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import TrainConfig

# stream ids for step_seed: independent random streams
_STREAM_DATA, _STREAM_STEP, _STREAM_EVAL = 1, 2, 3

# ----------------------------------------------------------------------------- determinism


def step_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, stream, index)`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> Tensor:
    """Indices of the global batch of ``step`` into a data set of ``n`` items, shape (batch_size,).

    Sample positions ``step·B … step·B + B − 1`` walk through epochs; epoch ``e`` is the
    permutation seeded by ``(seed, e)``. A pure function of its arguments (no process history).
    """
    if n < 1:
        raise ValueError("the training set is empty")
    pos = step * batch_size + torch.arange(batch_size)
    epochs = pos // n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in torch.unique(epochs).tolist():
        g = torch.Generator().manual_seed(step_seed(seed, _STREAM_DATA, e))
        perm = torch.randperm(n, generator=g)
        mask = epochs == e
        out[mask] = perm[pos[mask] % n]
    return out


# ----------------------------------------------------------------------------- data sources


class _Source:
    """Images on the device as uint8 (N, 3, S, S); ``degraded`` None when unpaired; ``task``
    (N,) int64 task ids into ``task_names`` (None when unknown)."""

    def __init__(
        self,
        clean: Tensor,
        degraded: Tensor | None,
        task: Tensor | None = None,
        task_names: tuple[str, ...] = (),
    ) -> None:
        self.clean, self.degraded = clean, degraded
        self.task, self.task_names = task, tuple(task_names)

    def __len__(self) -> int:
        return self.clean.shape[0]


def data_of_config(cfg: TrainConfig, progress: bool = False) -> Any:
    """The All-in-One-5 build (:class:`~drdd_edu.data.AllInOne5`) that a config trains and is
    evaluated on: its patch size (``data_size`` or ``image_size``), data seed, scales, patch cap
    and cache folder — the same call as the trainer's."""
    from ..data import build_all_in_one5

    return build_all_in_one5(
        size=cfg.data_size or cfg.image_size,
        seed=cfg.data_seed,
        cache_dir=cfg.cache_dir or None,
        scales=cfg.data_scales,
        max_patches_per_image=cfg.max_patches_per_image or None,
        progress=progress,
    )


def _load_sources(cfg: TrainConfig, device: torch.device, verbose: bool) -> tuple[Any, Any]:
    """(train source, test source) for the config's stage and data set."""
    if cfg.dataset == "synthetic":
        return None, None
    from ..data import default_cache_dir

    try:
        data = data_of_config(cfg, progress=verbose)
    except OSError as err:  # a read-only, full or misplaced cache folder
        where = cfg.cache_dir or default_cache_dir()
        name = f": {err.filename}" if err.filename else ""
        raise OSError(
            err.errno,
            f"{err.strerror or err}{name}: the All-in-One-5 data cache in {where} cannot be "
            "written; point DRDD_EDU_CACHE_DIR (or the config's cache_dir) to a writable folder",
        ) from err
    test = _only_tasks(data.paired_subset("test"), data.tasks, cfg.tasks)
    test_src = _Source(test.clean_u8, test.degraded_u8, test.task, data.tasks)
    if cfg.stage == "drdd_noise" and not cfg.noise_conditioned:  # unpaired clean images (D1)
        train_src = _Source(data.unpaired_pool(cfg.unpaired_pool).to(device), None)
    elif cfg.generation:  # I_in = 0 is made in Trainer.batch; I_0 = unpaired targets
        train_src = _Source(data.target_dataset().clean_u8.to(device), None)
    else:
        sub = _only_tasks(data.paired_subset("train", cfg.data_fraction), data.tasks, cfg.tasks)
        train_src = _Source(
            sub.clean_u8.to(device), sub.degraded_u8.to(device), sub.task.to(device), data.tasks
        )
    return train_src, test_src


def _only_tasks(pairs: Any, names: tuple[str, ...], tasks: tuple[str, ...]) -> Any:
    """The patches of ``pairs`` (a :class:`~drdd_edu.data.PairedPatches`) whose task id is one
    of ``tasks`` (all when empty), in their original order."""
    if not tasks:
        return pairs
    from ..data import PairedPatches

    ids = torch.tensor([names.index(t) for t in tasks], dtype=pairs.task.dtype)
    keep = torch.isin(pairs.task, ids)
    if not bool(keep.any()):
        raise ValueError(f"the data set has no patches of tasks {list(tasks)}")
    return PairedPatches(
        pairs.clean_u8[keep], pairs.degraded_u8[keep], pairs.task[keep], pairs.index[keep]
    )


def _crop(x: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """Per-sample crops: x (B, C, S, S), top/left (B,) → (B, C, size, size)."""
    ar = torch.arange(size, device=x.device)
    rows = (top[:, None] + ar)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (B, 1, size)
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)


def rotate_quarter_turns(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate each image of ``x`` (B, C, S, S) by ``turns[i]`` × 90° (counter-clockwise, in the
    (H, W) plane; ``turns`` (B,) integers, taken mod 4). Square images only."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"quarter turns need square images, got {tuple(x.shape[-2:])}")
    out = x
    for k in (1, 2, 3):
        hit = (turns % 4 == k)[:, None, None, None]
        out = torch.where(hit, torch.rot90(x, k, dims=(-2, -1)), out)
    return out
