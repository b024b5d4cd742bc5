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
never silently restarts from scratch because a checkpoint could not be read. A checkpoint that
holds pickled Python objects is refused (it could run code when unpickled), and the error says
so instead of suggesting to load it unsafely. A full disk while writing raises an ``OSError``
whose message starts with "No space left on device".

One run folder, one writer: :class:`RunLock` (``<run folder>/.lock``) is held by the process that
trains into a folder; a second process gets :class:`RunLockedError` naming the holder's pid.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:  # POSIX; without it (Windows) run folders are not locked, see RunLock
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms this project tests
    fcntl = None  # type: ignore[assignment]

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
    "LOCK_NAME",
    "RunLock",
    "RunLockedError",
]

FORMAT_VERSION = 1
"""Bump when the layout of the checkpoint dictionary changes."""

CHECKPOINT_PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")
"""Checkpoint file names: ``ckpt_<step, 8 digits>.pt``."""

_TMP_PREFIX = ".ckpt-tmp-"
_REQUIRED_KEYS = ("format_version", "step", "config", "model", "ema", "optimizer", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupt, truncated, wrong version or config)."""


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock (the message names its pid)."""


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
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = _disk_full(err)
        if full is not None:
            raise OSError(
                full,
                f"{os.strerror(full)} while writing checkpoint {path} "
                f"({_free_space(path.parent)} free there); free some space (or lower keep_last), "
                "or choose another output folder, then --resume",
            ) from err
        raise
    _fsync_dir(path.parent)
    return path


def _disk_full(err: BaseException) -> int | None:
    """``errno.ENOSPC`` or ``EDQUOT`` if ``err`` or an exception it was raised from or during is
    a full disk or quota (torch's writer buries the ``OSError`` under a ``RuntimeError``
    "[enforce fail at inline_container.cc]"), else None."""
    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in codes:
            return int(e.errno)
        if "No space left on device" in str(e):
            return errno.ENOSPC
        if "Disk quota exceeded" in str(e):
            return getattr(errno, "EDQUOT", errno.ENOSPC)
        stack += [e.__cause__, e.__context__]
    return None


def _free_space(directory: Path) -> str:
    """Free bytes on ``directory``'s file system, human-readable ("?" if unknown)."""
    try:
        free = float(shutil.disk_usage(directory).free)
    except OSError:
        return "? bytes"
    for unit in ("bytes", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} GB"  # pragma: no cover - the loop returns


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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle an existing file means it is unusable
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointError(_unreadable_message(path, err)) from err
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
    if not isinstance(ckpt["config_dict"], dict):
        raise CheckpointError(
            f"checkpoint {path} holds a config that is a JSON "
            f"{_json_kind(ckpt['config_dict'])}, not an object of config keys; it was not "
            "written by drdd-edu train (or was edited): use a checkpoint that drdd-edu train wrote"
        )
    if expected_config is not None:
        check_config(ckpt["config_dict"], expected_config, ignore_keys, path)
    return ckpt


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type (list → "array", str → "string", …)."""
    if isinstance(value, bool):
        return "boolean"
    kinds = {list: "array", str: "string", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


#: where a good checkpoint comes from (never: "load it with weights_only=False")
_GOOD_COPY = (
    "copy it again from where it came from (the run folder or a backup), or make one with "
    "drdd-edu train"
)


def _unreadable_message(path: Path, err: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused ``path`` and how to get a
    good file. torch's own message is never quoted whole: when it refuses a pickle it suggests
    ``weights_only=False``, i.e. running whatever code the file holds."""
    text = str(err)
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if pickled:
        return (
            f"{path} is not a drdd_edu checkpoint: besides tensors, numbers and strings it holds "
            f"a pickled Python object ({pickled.group(1)}), and drdd_edu never unpickles objects "
            "(that can run any code the file carries); do not use this file: use one that "
            "drdd-edu train wrote (runs/NAME/checkpoints/ckpt_*.pt), or train one"
        )
    detail = ""
    if "weights_only" in text or "weights only load failed" in text.lower():
        inner = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        detail = inner.group(1).strip() if inner else ""
    else:
        detail = text.strip().splitlines()[0].strip() if text.strip() else ""
    if "weights_only" in detail:  # never pass on torch's advice to unpickle
        detail = ""
    detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return (
        f"cannot read checkpoint {path}: truncated or corrupt ({detail}); the file is damaged "
        "(e.g. a crash or a full disk while copying it): delete it to resume from the previous "
        f"checkpoint, or {_GOOD_COPY}"
    )


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


# ----------------------------------------------------------------------------- run-folder lock

LOCK_NAME = ".lock"
"""The lock file inside a run folder (see :class:`RunLock`)."""

_held_lock = threading.Lock()
_held: dict[tuple[int, int], list[int]] = {}  # (st_dev, st_ino) of a lock file → [fd, holders]


class RunLock:
    """An exclusive lock on a run folder: one process at a time trains into it.

    ``RunLock.acquire(folder)`` creates ``folder`` (and ``folder/.lock``) if needed and takes an
    exclusive, non-blocking ``fcntl.flock`` on the lock file; when another process holds it,
    :class:`RunLockedError` names that process (pid, host, command, start time — written into
    the file by the holder). :meth:`release` (or leaving a ``with`` block, or the object being
    garbage-collected) lets go.

    Why the standard library suffices (no third-party lock package): an ``flock`` belongs to the
    open file, and the kernel drops it when the holder's last descriptor closes — including when
    the process dies by SIGKILL, OOM or a power-off of its session. So there is no stale lock to
    detect or break (a killed run can ``--resume`` at once), no pid-liveness guessing, and the
    file's contents only serve the error message. Lock-file packages add timeouts and
    cross-platform shims that this use does not need. Linux maps ``flock`` on NFS to POSIX
    record locks, so it holds across hosts there too.

    Within one process the lock is shared: a second ``acquire`` of the same folder (say, a
    notebook cell re-creating its ``Trainer``, or ``ensure_run`` around its ``Trainer``) counts
    one more holder of the same descriptor instead of refusing itself; the file is unlocked when
    the last holder releases. Under DDP only rank 0 locks (it alone writes; see
    :class:`~drdd_edu.train.Trainer`). On platforms without ``fcntl`` (Windows) no lock is taken.
    """

    def __init__(self, directory: Path, key: tuple[int, int] | None) -> None:
        self.directory = directory
        self._key = key
        self._finalizer = weakref.finalize(self, _drop_holder, key) if key is not None else None

    @classmethod
    def acquire(cls, directory: str | os.PathLike) -> RunLock:
        """Lock ``directory`` (created if missing) or raise :class:`RunLockedError`; an
        ``OSError`` (read-only or full disk, a file in the way) says the folder is unusable."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise OSError(
                err.errno,
                f"{err.strerror or err}: cannot create the run folder {directory} and its lock "
                f"file; choose a writable output folder",
            ) from err
        if fcntl is None:  # pragma: no cover - Windows
            os.close(fd)
            return cls(directory, None)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with _held_lock:
            if key in _held:  # this process holds it already: share
                os.close(fd)
                _held[key][1] += 1
                return cls(directory, key)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunLockedError(_locked_message(directory)) from None
                raise
            _held[key] = [fd, 1]
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        return cls(directory, key)

    @property
    def held(self) -> bool:
        """Whether this handle still holds the lock."""
        return self._finalizer is not None and self._finalizer.alive

    def release(self) -> None:
        """Let go (idempotent); the file stays, unlocked, and is overwritten by the next holder."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _command_line(limit: int = 160) -> str:
    """This process's command line, shortened (``python -m drdd_edu.cli train …``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    prog = f"python -m {spec.name}" if spec is not None and spec.name else Path(sys.argv[0]).name
    line = " ".join([prog, *sys.argv[1:]])
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _drop_holder(key: tuple[int, int] | None) -> None:
    with _held_lock:
        entry = _held.get(key) if key is not None else None
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]  # type: ignore[arg-type]
            os.close(entry[0])  # closing the last descriptor drops the flock


def _locked_message(directory: Path) -> str:
    """The "run folder … is in use by pid N on HOST (COMMAND, since T); …" line, read from the
    lock file (retried briefly: the holder writes it just after locking)."""
    info: dict[str, Any] = {}
    for _ in range(20):
        try:
            info = json.loads((directory / LOCK_NAME).read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and "pid" in info:
            break
        time.sleep(0.025)
    if not isinstance(info, dict) or "pid" not in info:
        who = "another process (it has not yet written its pid)"
    else:
        extra = ", ".join(str(info[k]) for k in ("command", "since") if info.get(k))
        who = f"pid {info['pid']} on {info.get('host', '?')}" + (f" ({extra})" if extra else "")
    return (
        f"run folder {directory} is in use by {who}; wait for that run to finish or stop it "
        "(a killed run releases the folder at once), or choose another output folder"
    )
