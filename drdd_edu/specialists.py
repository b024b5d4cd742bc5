"""Per-task specialists: one small RDDM network per degradation, chosen by the task id.

A *blind* all-in-one network must first recognise the degradation from the input alone. On 32²
patches the tiny one often cannot: a nearly flat patch that was blurred looks like a hazy or dark
one, and a network that "dehazes" it loses far more than blur ever cost (measured in
``data/checkpoints/README.md``). A **specialist** is trained on one task's pairs only
(``TrainConfig.tasks = [name]``) and is called only on inputs of that task — *non-blind*
restoration, the usual single-task setting of restoration papers. Five tiny specialists together
are still smaller than one ``small`` network.

A specialist folder holds one inference checkpoint per task (:mod:`drdd_edu.export`) and
``manifest.json``::

    {"format": 1,
     "tasks": {"blur": {"file": "tiny-blur.pt", "sha256": "…", "sampling_steps": 1,
                        "selection": {"1": <mean PSNR>, "2": …}, "n_selection": 128, …}, …}}

``sampling_steps`` is chosen per specialist on 128 of its own *training* patches: the candidate
with the highest mean PSNR (ties: fewer steps). That keeps the test split out of every choice, but
it is optimistic — the network fits its training patches better than new ones, so the ranking on
held-out patches can differ (notebook 07, exercise 8). ``python -m drdd_edu.specialists OUT
CHECKPOINT…`` writes such a folder from finished single-task training checkpoints; the folder's
``.pt`` files and manifest are replaced together, only after every checkpoint has been checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .degradations import TASKS, check_images
from .diffusion import from_model_range, to_model_range
from .export import export_inference_checkpoint
from .metrics import psnr
from .nn import ResidualDenoiser
from .samplers import sample
from .train.batches import data_of_config
from .train.config import TrainConfig
from .train.evaluation import model_from_checkpoint

__all__ = [
    "MANIFEST",
    "Specialist",
    "build_specialists",
    "choose_sampling_steps",
    "load_specialists",
    "main",
    "restore_by_task",
    "restore_with",
]

MANIFEST = "manifest.json"
FORMAT = 1
_CHUNK = 64  # images per sampler call


@dataclass
class Specialist:
    """One task's network: the EMA model (eval mode), its training config, the number of
    sampling steps chosen for it, and the checkpoint it came from."""

    task: str
    model: ResidualDenoiser
    config: TrainConfig
    sampling_steps: int
    path: Path


def restore_with(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    degraded01: Tensor,
    sampling_steps: int,
    seed: int = 0,
) -> Tensor:
    """Restore ``degraded01`` (N, 3, H, W) on [0, 1] with RDDM's η = 0 sampler in
    ``sampling_steps`` steps from I_in + β̄_T·z (z from a generator seeded by ``seed``, drawn in
    chunks of 64 images); returns (N, 3, H, W) on [0, 1] (not clamped)."""
    degraded01, _ = check_images(degraded01, "degraded01", allow_unbatched=False)
    if isinstance(sampling_steps, bool) or not isinstance(sampling_steps, int):
        raise TypeError(f"sampling_steps must be an int, got {sampling_steps!r}")
    if not 1 <= sampling_steps <= cfg.T:
        raise ValueError(f"sampling_steps must be in [1, {cfg.T}], got {sampling_steps}")
    sch = cfg.make_schedule()
    g = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(degraded01), _CHUNK):
        x_in = to_model_range(degraded01[i : i + _CHUNK].float())
        out = sample(model, x_in, sch, sampling_steps, mode=model.mode, generator=g)
        outs.append(from_model_range(out.float()))
    model.train(was_training)
    return torch.cat(outs)


def choose_sampling_steps(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    clean01: Tensor,
    degraded01: Tensor,
    candidates: Iterable[int] = (1, 2, 3, 5),
    seed: int = 0,
) -> tuple[int, dict[int, float]]:
    """The number of sampling steps with the highest mean PSNR on the pairs given (selection
    pairs: never the test split), and every candidate's mean PSNR (dB). Ties go to fewer steps.
    Images (N, 3, H, W) on [0, 1]; candidates are step counts in [1, cfg.T]."""
    clean01, _ = check_images(clean01, "clean01", allow_unbatched=False)
    degraded01, _ = check_images(degraded01, "degraded01", allow_unbatched=False)
    if clean01.shape != degraded01.shape:
        raise ValueError(
            f"clean01 {tuple(clean01.shape)} and degraded01 {tuple(degraded01.shape)} differ"
        )
    cands = _candidates(candidates, cfg.T)
    table = {
        n: float(psnr(restore_with(model, cfg, degraded01, n, seed), clean01).mean()) for n in cands
    }
    best = max(cands, key=lambda n: (table[n], -n))
    return best, table


def _candidates(candidates: Iterable[int], T: int) -> list[int]:
    cands = sorted(set(candidates))
    if not cands:
        raise ValueError("no candidate numbers of sampling steps")
    bad = [c for c in cands if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= T]
    if bad:
        raise ValueError(f"candidate sampling steps must be ints in [1, {T}], got {bad}")
    return cands


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _single_task(cfg: TrainConfig, where: object) -> str:
    """The one task of a specialist's config; ``ValueError`` unless it is an RDDM restoration
    network (stage ``rddm``, conditioned on I_in, not generation) trained on exactly one task."""
    if cfg.stage != "rddm" or not cfg.conditioned or cfg.generation:
        raise ValueError(
            f"{where}: a specialist is an RDDM restoration network (stage 'rddm', conditioned on "
            f"I_in, no generation), got stage {cfg.stage!r}, generation = {cfg.generation}"
        )
    if len(cfg.tasks) != 1:
        raise ValueError(
            f"{where}: a specialist is trained on exactly one task (config tasks = [name]), "
            f"got tasks = {list(cfg.tasks)}"
        )
    return cfg.tasks[0]


def load_specialists(folder: str | Path) -> dict[str, Specialist]:
    """The specialists of ``folder`` (its ``manifest.json``), by task name, in task order.

    Raises ``FileNotFoundError`` for a missing folder, manifest or checkpoint, ``ValueError`` for
    a malformed manifest, a checkpoint whose SHA-256 differs from the manifest's (edited or
    corrupt) or whose config is not a single-task RDDM network of the task it is listed under,
    :class:`~drdd_edu.checkpoint.CheckpointError` for an unreadable checkpoint.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no specialist manifest at {path}")
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["tasks"]
        if manifest.get("format") != FORMAT or not isinstance(entries, dict) or not entries:
            raise ValueError("format or tasks")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a specialist manifest (format {FORMAT}): {err}") from err
    out = {}
    for task in sorted(entries, key=lambda t: TASKS.index(t) if t in TASKS else len(TASKS)):
        if task not in TASKS:
            raise ValueError(f"{path}: unknown task {task!r}; tasks are {TASKS}")
        entry = entries[task]
        try:
            file, sha, steps = entry["file"], entry["sha256"], entry["sampling_steps"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: task {task!r} needs file, sha256, sampling_steps") from err
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{path}: task {task!r}: sampling_steps must be an int ≥ 1")
        ck_path = folder / str(file)
        if Path(str(file)).name != str(file):
            raise ValueError(f"{path}: task {task!r}: file {file!r} must be a name in the folder")
        if not ck_path.is_file():
            raise FileNotFoundError(f"specialist checkpoint {ck_path} (task {task!r}) is missing")
        if _sha256(ck_path) != sha:
            raise ValueError(
                f"specialist checkpoint {ck_path} does not match its SHA-256 in {path}: the file "
                "was changed or is corrupt"
            )
        model, cfg, _ = model_from_checkpoint(ck_path)
        trained_on = _single_task(cfg, ck_path)
        if trained_on != task:
            raise ValueError(f"{ck_path} is listed for {task!r} but was trained on {trained_on!r}")
        out[task] = Specialist(task, model, cfg, steps, ck_path)
    return out


def restore_by_task(
    specialists: Mapping[str, Specialist],
    degraded01: Tensor,
    task_ids: Tensor,
    task_names: Sequence[str] = TASKS,
    seed: int = 0,
) -> Tensor:
    """Restore each image with the specialist of its task (non-blind restoration).

    Args:
        specialists: by task name (:func:`load_specialists`).
        degraded01: (N, 3, H, W) on [0, 1].
        task_ids: (N,) integer ids into ``task_names``.
        task_names: the names of the ids (default :data:`~drdd_edu.degradations.TASKS`).
        seed: the sampling noise of each task's images (:func:`restore_with`).

    Returns:
        (N, 3, H, W) restored images on [0, 1], in the input's order.
    """
    degraded01, _ = check_images(degraded01, "degraded01", allow_unbatched=False)
    if not isinstance(task_ids, Tensor) or task_ids.shape != (len(degraded01),):
        got = tuple(task_ids.shape) if isinstance(task_ids, Tensor) else type(task_ids).__name__
        raise ValueError(f"task_ids must be a tensor of shape ({len(degraded01)},), got {got}")
    if task_ids.is_floating_point() or task_ids.dtype == torch.bool:
        raise TypeError(f"task_ids must be integer task ids, got dtype {task_ids.dtype}")
    ids = task_ids.long()
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(task_names)):
        raise ValueError(f"task_ids must lie in [0, {len(task_names) - 1}] (ids of {task_names})")
    needed = [task_names[k] for k in torch.unique(ids).tolist()]
    missing = [t for t in needed if t not in specialists]
    if missing:
        raise ValueError(f"no specialist for task(s) {missing}; have {list(specialists)}")
    out = torch.empty_like(degraded01, dtype=torch.float32)
    for k, name in enumerate(task_names):
        mask = ids == k
        if bool(mask.any()):
            spec = specialists[name]
            out[mask] = restore_with(
                spec.model, spec.config, degraded01[mask], spec.sampling_steps, seed
            )
    return out


def _selection_pairs(cfg: TrainConfig, task: str, n: int) -> tuple[Tensor, Tensor]:
    """``n`` training pairs of ``task`` spread evenly over the run's training split (on [0, 1])."""
    data = data_of_config(cfg)
    train = data.paired_subset("train")
    idx = torch.nonzero(train.task == data.tasks.index(task)).flatten()
    idx = idx[torch.linspace(0, len(idx) - 1, min(n, len(idx))).round().long()]
    return train.clean_u8[idx].float() / 255, train.degraded_u8[idx].float() / 255


def build_specialists(
    checkpoints: Iterable[str | Path],
    out_dir: str | Path,
    candidates: Iterable[int] = (1, 2, 3, 5),
    n_selection: int = 128,
    max_mib: float = 2.0,
) -> dict:
    """Write a specialist folder ``out_dir`` from single-task training checkpoints; returns the
    manifest.

    Every checkpoint is checked first (readable, a single-task RDDM network, one per task). Then
    each is exported (float16 EMA weights) as ``<preset>-<task>.pt``, its sampling steps are
    chosen on ``n_selection`` of its *training* pairs (:func:`choose_sampling_steps`) and
    ``manifest.json`` is written — all in a temporary folder that then *replaces* ``out_dir``
    (its old ``.pt`` and manifest go; other files, such as configs, stay), so a failure leaves
    the old folder intact.
    """
    if isinstance(n_selection, bool) or not isinstance(n_selection, int) or n_selection < 1:
        raise ValueError(f"n_selection must be an int ≥ 1, got {n_selection!r}")
    out = Path(out_dir)
    loaded = []
    for src in checkpoints:
        src = Path(src)
        model, cfg, ck = model_from_checkpoint(src)
        task = _single_task(cfg, src)
        if task in [t for t, *_ in loaded]:
            raise ValueError(f"two checkpoints for task {task!r} ({src})")
        loaded.append((task, src, model, cfg, ck, _candidates(candidates, cfg.T)))
    if not loaded:
        raise ValueError("no checkpoints given")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tasks: dict[str, dict] = {}
        for task, src, model, cfg, ck, cands in loaded:
            clean, degraded = _selection_pairs(cfg, task, n_selection)
            best, table = choose_sampling_steps(model, cfg, clean, degraded, cands)
            name = f"{cfg.preset}-{task}.pt"
            dst = export_inference_checkpoint(src, tmp / name, max_mib=max_mib)
            tasks[task] = {
                "file": name,
                "sha256": _sha256(dst),
                "sampling_steps": best,
                "selection": {str(n): round(v, 4) for n, v in table.items()},
                "selection_input": round(float(psnr(degraded, clean).mean()), 4),
                "n_selection": len(clean),
                "trained_steps": int(ck["step"]),
                "exported_from": str(src),
            }
        manifest = {
            "format": FORMAT,
            "chosen_on": "mean PSNR on the specialist's own training patches (never the test "
            "split; optimistic: the network has fitted them)",
            "tasks": dict(sorted(tasks.items(), key=lambda kv: TASKS.index(kv[0]))),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for old in [*out.glob("*.pt"), out / MANIFEST]:
            old.unlink(missing_ok=True)
        for new in tmp.iterdir():
            new.replace(out / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m drdd_edu.specialists OUT CHECKPOINT…``: see :func:`build_specialists`."""
    p = argparse.ArgumentParser(prog="python -m drdd_edu.specialists", description=__doc__)
    p.add_argument("out", help="the specialist folder to write")
    p.add_argument("checkpoints", nargs="+", help="single-task training checkpoints")
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 3, 5])
    p.add_argument("--n-selection", type=int, default=128)
    p.add_argument("--max-mib", type=float, default=2.0)
    args = p.parse_args(argv)
    try:
        manifest = build_specialists(
            args.checkpoints, args.out, args.candidates, args.n_selection, args.max_mib
        )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"drdd_edu.specialists: error: {err}", file=sys.stderr)
        return 2
    for task, entry in manifest["tasks"].items():
        print(f"{task}: {entry['file']}, {entry['sampling_steps']} sampling step(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
