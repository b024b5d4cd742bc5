"""Training checkpoints: atomic writes, safe loading, rotation and RNG-state capture.

A checkpoint is one ``.pt`` file written by :func:`torch.save` and holding only what
``torch.load(path, weights_only=True)`` can read back (tensors, dicts, lists, ints, floats,
strings, bools, None)::

    {
        "format_version": 1,
        "step": int,                       # optimisation steps completed
        "config": str,                     # the training config as canonical JSON
        "model": {name: Tensor},           # model.state_dict()
        "ema": {name: Tensor},             # EMA copy's state_dict()
        "optimizer": {...},                # optimizer.state_dict()
        "rng": {"torch": ByteTensor, "cuda": [ByteTensor] or [], "numpy": {...}, "python": {...}},
        "extra": {...},                    # free-form (metrics, world size, …)
    }

Writes are atomic: the file is written to a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the target with :func:`os.replace`, so a crash mid-write leaves
either the old file or the new one, never a torn file under the final name. Loading turns every
failure (missing, truncated, garbage, wrong format version, config mismatch) into a
:class:`CheckpointError` (``FileNotFoundError`` for a missing file) that names the file: a run
never silently restarts from scratch because a checkpoint could not be read.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "CHECKPOINT_PATTERN",
    "CheckpointError",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "check_config",
    "rotate_checkpoints",
    "capture_rng_state",
    "restore_rng_state",
    "remove_stale_temp_files",
]

FORMAT_VERSION = 1
"""Bump when the layout of the checkpoint dictionary changes."""

CHECKPOINT_PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")
"""Checkpoint file names: ``ckpt_<step, 8 digits>.pt``."""

_TMP_PREFIX = ".ckpt-tmp-"
_REQUIRED_KEYS = ("format_version", "step", "config", "model", "ema", "optimizer", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupt, truncated, wrong version or config)."""


# ----------------------------------------------------------------------------- names


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    """``directory/ckpt_<step:08d>.pt``."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int ≥ 0, got {step!r}")
    return Path(directory) / f"ckpt_{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """All ``(step, path)`` checkpoint files in ``directory``, sorted by step (temp files ignored).

    A missing directory gives an empty list.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = CHECKPOINT_PATTERN.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or None if there is none.

    Only the name is looked at: whether the file is readable is :func:`load_checkpoint`'s
    job, so an unreadable latest checkpoint is reported instead of skipped.
    """
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def rotate_checkpoints(directory: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints (``keep_last = 0`` keeps all).

    Returns:
        The deleted paths.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise ValueError(f"keep_last must be an int ≥ 0 (0 keeps all), got {keep_last!r}")
    if keep_last == 0:
        return []
    found = list_checkpoints(directory)
    removed = []
    for _, path in found[: max(0, len(found) - keep_last)]:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files left behind by writers that crashed mid-write."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(_TMP_PREFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ----------------------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU, and the current CUDA device if CUDA is in use),
    numpy and Python's ``random``, in a form ``torch.load(weights_only=True)`` accepts."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # only the current device: touching every GPU would create a context on each of
        # them in every DDP rank
        "cuda": [torch.cuda.get_rng_state().cpu()] if torch.cuda.is_initialized() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # 624 × uint32
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),  # 625 values < 2**32
            "gauss_next": py_gauss,
        },
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (the CUDA state to the current device)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda[0])  # the current device
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


# ----------------------------------------------------------------------------- save / load


def _config_json(config: str | Mapping[str, Any]) -> str:
    if isinstance(config, str):
        json.loads(config)  # must be valid JSON
        return config
    return json.dumps(dict(config), sort_keys=True)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: Mapping[str, Any] | torch.nn.Module,
    ema: Mapping[str, Any] | torch.nn.Module,
    optimizer: Mapping[str, Any] | torch.optim.Optimizer,
    step: int,
    config: str | Mapping[str, Any],
    rng: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder → fsync → ``os.replace``).

    Args:
        path: the target file; its folder is created if needed.
        model, ema: modules or their state dicts.
        optimizer: an optimizer or its state dict.
        step: optimisation steps completed (int ≥ 0).
        config: the training config as a JSON string or a JSON-serialisable mapping.
        rng: RNG states; default :func:`capture_rng_state` (the current global states).
        extra: more weights-only-safe data (numbers, strings, tensors, lists, dicts).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int ≥ 0, got {step!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def sd(obj: Any) -> Any:
        return obj.state_dict() if hasattr(obj, "state_dict") else dict(obj)

    payload = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "config": _config_json(config),
        "model": sd(model),
        "ema": sd(ema),
        "optimizer": sd(optimizer),
        "rng": dict(rng) if rng is not None else capture_rng_state(),
        "extra": dict(extra or {}),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".pt", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; a checkpoint gets the mode any new file would get
        tmp.chmod(0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    expected_config: str | Mapping[str, Any] | None = None,
    ignore_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and validate it.

    Args:
        path: the file.
        map_location: where tensors go (default CPU).
        expected_config: if given, the stored config must equal it (see :func:`check_config`).
        ignore_keys: config keys allowed to differ (e.g. the number of steps on resume).

    Returns:
        The checkpoint dictionary (layout in the module docstring); ``config`` stays a JSON
        string, ``config_dict`` holds it parsed.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, corrupt, not a checkpoint, has another format
            version, or its config differs from ``expected_config``; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    advice = (
        "the file is damaged (e.g. a crash or a full disk while copying it); delete it to "
        "resume from the previous checkpoint, or restore it from a backup"
    )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle an existing file means it is unusable
        if isinstance(err, FileNotFoundError):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({type(err).__name__}: {msg}); "
            f"{advice}"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path} is not a drdd_edu checkpoint (it holds a {type(ckpt).__name__}, not a dict)"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a drdd_edu checkpoint: it lacks the keys {missing}")
    version = ckpt["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, this drdd_edu reads version "
            f"{FORMAT_VERSION}; use the drdd_edu version that wrote it"
        )
    try:
        ckpt["config_dict"] = json.loads(ckpt["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} holds an unreadable config: {err}") from err
    if expected_config is not None:
        check_config(ckpt["config_dict"], expected_config, ignore_keys, path)
    return ckpt


def check_config(
    stored: str | Mapping[str, Any],
    current: str | Mapping[str, Any],
    ignore_keys: Iterable[str] = (),
    path: str | os.PathLike | None = None,
) -> None:
    """Raise :class:`CheckpointError` listing every key (outside ``ignore_keys``) whose value
    differs between the stored and the current config."""
    a = json.loads(stored) if isinstance(stored, str) else dict(stored)
    b = json.loads(current) if isinstance(current, str) else dict(current)
    # compare through JSON so that tuples and lists count as equal
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    skip = set(ignore_keys)
    diffs = [
        f"{k}: checkpoint {a.get(k, '<unset>')!r} vs now {b.get(k, '<unset>')!r}"
        for k in sorted(set(a) | set(b))
        if k not in skip and a.get(k, "<unset>") != b.get(k, "<unset>")
    ]
    if diffs:
        where = f" {path}" if path is not None else ""
        raise CheckpointError(
            f"config mismatch on resume: checkpoint{where} was written with a different "
            f"config ({'; '.join(diffs)}); use the same config, or a new output folder"
        )
