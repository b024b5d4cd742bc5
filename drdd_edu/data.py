"""All-in-One-5: a small, offline, deterministic restoration benchmark built from bundled images.

The DRDD paper evaluates on *All-in-One-5* (low-light, deraining, denoising σ = 25, deblurring,
dehazing). Its real data sets cannot be downloaded here, so this module rebuilds the same
*structure* from the clean colour photographs that ship inside installed packages
(scikit-image, scikit-learn, matplotlib) and synthesises the five degradations with
:mod:`drdd_edu.degradations`.

Construction (all steps seeded and deterministic):

1. **Sources.** 11 colour images (``SOURCES``). Each source belongs to exactly one group
   (``SOURCE_SPLIT``): paired *train*, paired *test* or the unpaired clean *target* domain.
   Splitting by source image (not by patch) keeps near-duplicate patches of one photo out of two
   splits.
2. **Patches.** Each source is first shrunk (never enlarged) so that its shorter side is at most
   ``max_short_side``, then, for every factor in ``scales``, resized (antialiased bilinear) and cut
   into a centred non-overlapping grid of ``size × size`` patches. Nearly flat patches (pixel std
   below ``min_patch_std``, e.g. the black corners of the retina photo) are dropped, and at most
   ``max_patches_per_image`` patches per source are kept (a seeded choice). Patches are stored as
   uint8, like image files.
3. **Tasks.** In the train and test groups every patch gets one task id (index into ``TASKS``):
   source by source, the patches are visited in a seeded random order and dealt round-robin, so
   each task gets the same number of patches (±1) overall and within every source.
4. **Degraded inputs.** Patch ``i`` of a split is degraded by its task's function with its own
   seed ``SeedSequence([seed, 2, split, i])``, so a sample does not depend on any other sample,
   then quantised to uint8.
5. **Data-fraction subsets.** ``AllInOne5.subset_indices(split, fraction)`` keeps, *per task*,
   the first ``⌊fraction · n_task + ½⌋ (round half up)`` patches of a fixed seeded permutation: deterministic,
   stratified by task and nested (the 25 % subset ⊂ 50 % ⊂ 75 % ⊂ 100 %).

Caching: the arrays are saved once as an uncompressed ``.npz`` without pickles
(``allow_pickle=False``) whose name encodes the build parameters, together with a SHA-256
``content_hash`` of all arrays. Loading recomputes the hash; a corrupt, truncated or mismatching
file raises ``ValueError`` with the path and the advice to delete it (it is then rebuilt on the
next call) — nothing is rebuilt silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .degradations import DEGRADATIONS, TASKS

__all__ = [
    "SOURCES",
    "SOURCE_SPLIT",
    "SPLITS",
    "AllInOne5",
    "BuildConfig",
    "CleanPatches",
    "PairedPatches",
    "build_all_in_one5",
    "default_cache_dir",
    "extract_patches",
    "hash_arrays",
    "load_all_in_one5",
    "load_source_image",
]

FORMAT_VERSION = 1
"""Bump when the construction changes, so old cache files are not reused."""

SPLITS: tuple[str, ...] = ("train", "test", "target")
"""Source groups: paired training data, paired held-out test data, unpaired clean target domain."""


# --------------------------------------------------------------------------------------------
# Source images (bundled with installed packages; nothing is downloaded)
# --------------------------------------------------------------------------------------------


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    import matplotlib.image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return matplotlib.image.imread(f, format="jpg")


SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),  # 512×512, skimage
    "coffee": _skimage("coffee"),  # 400×600, skimage
    "chelsea": _skimage("chelsea"),  # 300×451, skimage
    "rocket": _skimage("rocket"),  # 427×640, skimage
    "hubble_deep_field": _skimage("hubble_deep_field"),  # 872×1000, skimage
    "retina": _skimage("retina"),  # 1411×1411, skimage
    "immunohistochemistry": _skimage("immunohistochemistry"),  # 512×512, skimage
    "stereo_motorcycle": _skimage("stereo_motorcycle"),  # 500×741 (left view), skimage
    "china": _sklearn("china.jpg"),  # 427×640, scikit-learn
    "flower": _sklearn("flower.jpg"),  # 427×640, scikit-learn
    "grace_hopper": _grace_hopper,  # 600×512, matplotlib
}
"""Source name -> loader returning an ``(H, W, 3)`` uint8 RGB array (fixed order = source id)."""

SOURCE_SPLIT: dict[str, str] = {
    # paired train: everyday scenes plus the three "scientific" images (space, microscopy,
    # fundus photo) for variety; the model never has to generalise *to* those
    "astronaut": "train",
    "coffee": "train",
    "rocket": "train",
    "hubble_deep_field": "train",
    "immunohistochemistry": "train",
    "retina": "train",
    # paired test: an animal, a flower, a portrait — natural photos not seen in training
    "chelsea": "test",
    "flower": "test",
    "grace_hopper": "test",
    # unpaired clean target domain: natural photos (DRDD trains its denoiser on these only)
    "stereo_motorcycle": "target",
    "china": "target",
}
"""Fixed assignment of every source image to one of ``SPLITS`` (disjoint by construction)."""


def load_source_image(name: str) -> np.ndarray:
    """Load one bundled source image as an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ValueError: unknown name.
        RuntimeError: the image could not be loaded (missing package data), with the cause.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown source image {name!r}; expected one of {list(SOURCES)}")
    try:
        image = np.asarray(SOURCES[name]())
    except Exception as err:  # surface *why*, never skip a source silently
        raise RuntimeError(f"could not load bundled source image {name!r}: {err!r}") from err
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise RuntimeError(
            f"source image {name!r} should be (H, W, 3) uint8, got {image.shape} {image.dtype}"
        )
    return np.array(image[..., :3], dtype=np.uint8, order="C")  # writable copy


# --------------------------------------------------------------------------------------------
# Build configuration, seeds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildConfig:
    """Every parameter that determines the built arrays (part of the cache file name)."""

    size: int = 64
    seed: int = 0
    scales: tuple[float, ...] = (1.0, 0.75, 0.5)
    max_patches_per_image: int | None = None
    max_short_side: int | None = 512
    min_patch_std: float = 0.04

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 8):
            raise ValueError(f"size must be an int >= 8, got {self.size!r}")
        if isinstance(self.seed, bool) or not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not (0 < s <= 1) for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct numbers in (0, 1], got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        cap = self.max_patches_per_image
        if cap is not None and not (isinstance(cap, int) and cap >= 1):
            raise ValueError(f"max_patches_per_image must be None or an int >= 1, got {cap!r}")
        side = self.max_short_side
        if side is not None and not (isinstance(side, int) and side >= self.size):
            raise ValueError(f"max_short_side must be None or an int >= size, got {side!r}")
        if not (math.isfinite(self.min_patch_std) and self.min_patch_std >= 0):
            raise ValueError(f"min_patch_std must be >= 0, got {self.min_patch_std!r}")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), stored in the cache file and hashed."""
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)

    def file_name(self) -> str:
        """Cache file name, e.g. ``allinone5_v1_size64_seed0_all_<digest>.npz``."""
        cap = "all" if self.max_patches_per_image is None else f"max{self.max_patches_per_image}"
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:10]
        return f"allinone5_v{FORMAT_VERSION}_size{self.size}_seed{self.seed}_{cap}_{digest}.npz"


# Stream ids for SeedSequence([seed, stream, ...]) so that the random choices are independent.
_STREAM_TASKS, _STREAM_DEGRADE, _STREAM_FRACTION, _STREAM_CAP = 1, 2, 3, 4


def _rng(*keys: int) -> np.random.Generator:
    """A numpy generator for the non-negative integer key tuple (stable across platforms)."""
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


def _sample_seed(seed: int, split: int, index: int) -> int:
    """Per-sample torch seed (63 bits) from ``SeedSequence([seed, 2, split, index])``."""
    state = np.random.SeedSequence([seed, _STREAM_DEGRADE, split, index]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def extract_patches(
    image: Tensor,
    size: int,
    scales: Sequence[float] = (1.0,),
    max_short_side: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Cut an image into centred non-overlapping ``size × size`` patches at several scales.

    The image is first shrunk so its shorter side is ``<= max_short_side`` (if given), then for
    every ``s`` in ``scales`` resized by ``s`` (antialiased bilinear; ``s = 1`` is not resampled)
    and tiled by a grid of ``floor(h/size) × floor(w/size)`` patches, centred in the image.

    Args:
        image: ``(3, H, W)`` float in ``[0, 1]``.
        size: patch side in pixels.
        scales: resize factors in ``(0, 1]``.
        max_short_side: optional cap on the shorter side before the scales are applied.

    Returns:
        ``(patches, origins)``: ``(N, 3, size, size)`` float in ``[0, 1]`` and ``(N, 3)`` int64
        rows ``(scale_index, top, left)`` in the resized image's coordinates.
    """
    if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float (3, H, W) tensor, got {tuple(image.shape)}")
    _, h0, w0 = image.shape
    base = 1.0 if max_short_side is None else min(1.0, max_short_side / min(h0, w0))
    patches, origins = [], []
    for k, s in enumerate(scales):
        h, w = round(h0 * base * s), round(w0 * base * s)
        if (h, w) == (h0, w0):
            img = image
        else:
            img = F.interpolate(
                image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0.0, 1.0)
        ny, nx = h // size, w // size
        if ny == 0 or nx == 0:
            continue
        oy, ox = (h - ny * size) // 2, (w - nx * size) // 2
        grid = img[:, oy : oy + ny * size, ox : ox + nx * size]
        grid = grid.reshape(3, ny, size, nx, size).permute(1, 3, 0, 2, 4)
        patches.append(grid.reshape(ny * nx, 3, size, size))
        yy, xx = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        origin = torch.stack(
            [torch.full((ny * nx,), k), oy + size * yy.reshape(-1), ox + size * xx.reshape(-1)], 1
        )
        origins.append(origin)
    if not patches:
        return image.new_zeros(0, 3, size, size), torch.zeros(0, 3, dtype=torch.int64)
    return torch.cat(patches), torch.cat(origins)


def _to_u8(x: Tensor) -> Tensor:
    """[0, 1] float -> uint8 by rounding ``255·x``."""
    return (x.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def _to_float(x: Tensor) -> Tensor:
    """uint8 -> float32 in [0, 1]."""
    return x.float().div_(255.0)


def _source_patches(name: str, source_id: int, cfg: BuildConfig) -> dict[str, Tensor]:
    """uint8 patches, their origins and source ids for one source image (filtered and capped)."""
    image = torch.from_numpy(load_source_image(name)).permute(2, 0, 1).float().div_(255.0)
    patches, origins = extract_patches(image, cfg.size, cfg.scales, cfg.max_short_side)
    patches = _to_u8(patches)
    keep = _to_float(patches).flatten(1).std(dim=1) >= cfg.min_patch_std
    idx = torch.nonzero(keep).flatten()
    cap = cfg.max_patches_per_image
    if cap is not None and idx.numel() > cap:
        chosen = _rng(cfg.seed, _STREAM_CAP, source_id).choice(idx.numel(), cap, replace=False)
        idx = idx[torch.from_numpy(np.sort(chosen))]
    n = idx.numel()
    return {
        "clean": patches[idx],
        "origin": origins[idx],
        "source": torch.full((n,), source_id, dtype=torch.int64),
    }


def _assign_tasks(source: Tensor, seed: int, split: int) -> Tensor:
    """Task ids dealt round-robin over a seeded order within each source (balanced ±1)."""
    task = torch.empty_like(source)
    counter = 0
    for sid in torch.unique(source).tolist():  # sorted source ids
        members = torch.nonzero(source == sid).flatten()
        order = _rng(seed, _STREAM_TASKS, split, sid).permutation(members.numel())
        ids = (counter + np.arange(members.numel())) % len(TASKS)
        task[members[torch.from_numpy(order)]] = torch.from_numpy(ids).to(task.dtype)
        counter += members.numel()
    return task


def _degrade_all(clean_u8: Tensor, task: Tensor, seed: int, split: int, progress: bool) -> Tensor:
    """Degrade every patch with its task's function and its own seed; uint8 output."""
    out = torch.empty_like(clean_u8)
    bar = tqdm(
        range(clean_u8.shape[0]),
        desc=f"degrading {SPLITS[split]}",
        disable=not progress,
        leave=False,
    )
    for i in bar:
        fn = DEGRADATIONS[TASKS[int(task[i])]]
        gen = torch.Generator().manual_seed(_sample_seed(seed, split, i))
        out[i] = _to_u8(fn(_to_float(clean_u8[i : i + 1]), generator=gen)[0])
    return out


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class PairedPatches(Dataset):
    """Paired restoration samples ``(clean, degraded, task_id)``.

    Items: ``clean`` and ``degraded`` float32 ``(3, size, size)`` in ``[0, 1]`` and ``task_id`` a
    0-d int64 tensor (index into ``TASKS``). Whole-split float tensors: ``.clean``, ``.degraded``;
    ids: ``.task``; positions in the full split: ``.index``.

    Args:
        clean_u8, degraded_u8: ``(N, 3, s, s)`` uint8.
        task: ``(N,)`` int64.
        index: ``(N,)`` int64 indices into the full split.
        hflip: randomly mirror both images left-right in ``__getitem__`` (torch global RNG).
    """

    def __init__(
        self,
        clean_u8: Tensor,
        degraded_u8: Tensor,
        task: Tensor,
        index: Tensor,
        hflip: bool = False,
    ) -> None:
        self.clean_u8, self.degraded_u8, self.task, self.index = clean_u8, degraded_u8, task, index
        self.hflip = hflip

    def __len__(self) -> int:
        return self.clean_u8.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        clean, degraded = _to_float(self.clean_u8[i]), _to_float(self.degraded_u8[i])
        if self.hflip and bool(torch.rand(()) < 0.5):
            clean, degraded = clean.flip(-1), degraded.flip(-1)
        return clean, degraded, self.task[i]

    @property
    def clean(self) -> Tensor:
        """All clean patches, float32 ``(N, 3, s, s)`` in ``[0, 1]`` (a new tensor per access)."""
        return _to_float(self.clean_u8)

    @property
    def degraded(self) -> Tensor:
        """All degraded inputs, float32 ``(N, 3, s, s)`` in ``[0, 1]`` (a new tensor per access)."""
        return _to_float(self.degraded_u8)


class CleanPatches(Dataset):
    """Unpaired clean patches (the target domain); items are float32 ``(3, s, s)`` in ``[0, 1]``."""

    def __init__(self, clean_u8: Tensor, hflip: bool = False) -> None:
        self.clean_u8, self.hflip = clean_u8, hflip

    def __len__(self) -> int:
        return self.clean_u8.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        clean = _to_float(self.clean_u8[i])
        return clean.flip(-1) if self.hflip and bool(torch.rand(()) < 0.5) else clean

    @property
    def clean(self) -> Tensor:
        """All patches, float32 ``(N, 3, s, s)`` in ``[0, 1]``."""
        return _to_float(self.clean_u8)


# --------------------------------------------------------------------------------------------
# The benchmark container
# --------------------------------------------------------------------------------------------

_PAIRED_KEYS = ("clean", "degraded", "task", "source", "origin")


@dataclass(frozen=True, eq=False, repr=False)
class AllInOne5:
    """The built benchmark: uint8 patches, task ids, provenance, config and content hash.

    ``arrays`` maps names to numpy arrays (this is exactly what is cached and hashed):

    * ``{train,test}_clean``, ``{train,test}_degraded``: ``(N, 3, size, size)`` uint8;
    * ``{train,test}_task``: ``(N,)`` int64 task ids (index into ``tasks``);
    * ``{train,test,target}_source``: ``(N,)`` int64 index into ``source_names``;
    * ``{train,test,target}_origin``: ``(N, 3)`` int64 ``(scale_index, top, left)``;
    * ``target_clean``: ``(N, 3, size, size)`` uint8 (no degraded counterpart: unpaired);
    * ``source_names``, ``source_split``, ``tasks``: unicode string arrays; ``config``: JSON.

    Float accessors ``train_clean``, ``train_degraded``, ``test_clean``, ``test_degraded``,
    ``target_clean`` return new float32 tensors in ``[0, 1]``; ``train_task``/``test_task`` int64.
    """

    arrays: dict[str, np.ndarray]
    config: BuildConfig
    content_hash: str

    # ---- float / id accessors -------------------------------------------------------------
    def _u8(self, key: str) -> Tensor:
        return torch.from_numpy(self.arrays[key])

    @property
    def train_clean(self) -> Tensor:
        return _to_float(self._u8("train_clean"))

    @property
    def train_degraded(self) -> Tensor:
        return _to_float(self._u8("train_degraded"))

    @property
    def train_task(self) -> Tensor:
        return self._u8("train_task")

    @property
    def test_clean(self) -> Tensor:
        return _to_float(self._u8("test_clean"))

    @property
    def test_degraded(self) -> Tensor:
        return _to_float(self._u8("test_degraded"))

    @property
    def test_task(self) -> Tensor:
        return self._u8("test_task")

    @property
    def target_clean(self) -> Tensor:
        return _to_float(self._u8("target_clean"))

    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names; task id ``k`` is ``tasks[k]`` (equals ``degradations.TASKS``)."""
        return tuple(self.arrays["tasks"].tolist())

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(self.arrays["source_names"].tolist())

    def sources_of(self, split: str) -> tuple[str, ...]:
        """Names of the source images whose patches are in ``split``."""
        _check_split(split, SPLITS)
        ids = np.unique(self.arrays[f"{split}_source"])
        return tuple(self.source_names[i] for i in ids)

    # ---- subsets and datasets --------------------------------------------------------------
    def subset_indices(self, split: str = "train", fraction: float = 1.0) -> Tensor:
        """Sorted indices of a deterministic, task-stratified, nested ``fraction`` of a split.

        For each task ``k`` with ``n_k`` patches, the first ``max(1, ⌊fraction · n_k + ½⌋)`` of
        a permutation seeded by ``(seed, 3, split, k)`` are kept. Because the permutation does not
        depend on ``fraction``, smaller fractions give subsets of larger ones.

        Args:
            split: ``"train"`` or ``"test"``.
            fraction: in ``(0, 1]`` (the paper uses 0.25, 0.5, 0.75, 1.0).

        Returns:
            int64 tensor of indices into the split.
        """
        _check_split(split, ("train", "test"))
        if isinstance(fraction, bool) or not (
            isinstance(fraction, (int, float)) and 0 < fraction <= 1
        ):
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        task = self.arrays[f"{split}_task"]
        chosen = []
        for k in range(len(self.tasks)):
            members = np.flatnonzero(task == k)
            if members.size == 0:
                continue
            order = _rng(self.config.seed, _STREAM_FRACTION, SPLITS.index(split), k).permutation(
                members.size
            )
            keep = max(1, math.floor(fraction * members.size + 0.5))
            chosen.append(members[order[:keep]])
        return torch.from_numpy(np.sort(np.concatenate(chosen)).astype(np.int64))

    def paired_subset(
        self, split: str = "train", fraction: float = 1.0, hflip: bool = False
    ) -> PairedPatches:
        """Paired ``(clean, degraded, task_id)`` dataset for ``split`` (optionally a fraction).

        Args:
            split: ``"train"`` or ``"test"``.
            fraction: see ``subset_indices`` (``1.0`` = the whole split).
            hflip: random left-right flips in ``__getitem__`` (training augmentation).
        """
        idx = self.subset_indices(split, fraction)
        pick = {k: self._u8(f"{split}_{k}")[idx] for k in ("clean", "degraded", "task")}
        return PairedPatches(pick["clean"], pick["degraded"], pick["task"], idx, hflip=hflip)

    def unpaired_pool(self, pool: str = "target") -> Tensor:
        """uint8 ``(N, 3, s, s)`` clean patches for an unpaired (clean-only) training stage.

        ``"target"``: the unpaired target split. ``"all_clean"``: every clean patch that is not
        in the test split — the target split followed by the clean halves of the whole paired
        training split (their degraded halves are never used), the abundant unpaired data of
        DRDD's premise (several times the target split; see :meth:`summary`).
        """
        if pool == "target":
            return self._u8("target_clean")
        if pool == "all_clean":
            return torch.cat([self._u8("target_clean"), self._u8("train_clean")])
        raise ValueError(f"unknown unpaired pool {pool!r}; choose 'target' or 'all_clean'")

    def target_dataset(self, hflip: bool = False) -> CleanPatches:
        """The unpaired clean target-domain patches as a dataset."""
        return CleanPatches(self._u8("target_clean"), hflip=hflip)

    def summary(self) -> str:
        """Human-readable counts per split and task, and the source assignment."""
        lines = [
            f"All-in-One-5 ({self.config.size}x{self.config.size}, seed {self.config.seed}, "
            f"hash {self.content_hash[:12]})"
        ]
        for split in SPLITS:
            n = self.arrays[f"{split}_clean"].shape[0]
            line = f"  {split:6s}: {n:5d} patches from {', '.join(self.sources_of(split))}"
            if split != "target":
                counts = np.bincount(self.arrays[f"{split}_task"], minlength=len(self.tasks))
                line += "\n          per task " + ", ".join(
                    f"{t}={c}" for t, c in zip(self.tasks, counts, strict=True)
                )
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.arrays[f'{s}_clean'].shape[0]}" for s in SPLITS)
        return f"AllInOne5({sizes}, size={self.config.size}, hash={self.content_hash[:12]})"

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the arrays, config and hash to ``path`` (``.npz``, atomically via a temp file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        payload = dict(self.arrays)
        payload["content_hash"] = np.array(self.content_hash)
        try:
            _write_npz(tmp, payload)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> AllInOne5:
        """Load a cache file and verify its content hash (see ``load_all_in_one5``)."""
        return load_all_in_one5(path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` (uncompressed zip of ``.npy`` files) with fixed timestamps and order.

    Unlike ``np.savez`` the bytes depend only on the arrays, so equal builds give equal files.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arrays[key]), allow_pickle=False)


def _check_split(split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}")


def hash_arrays(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays in sorted key order: key, dtype, shape and raw C-order bytes."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_REQUIRED_KEYS = (
    [f"{s}_{k}" for s in ("train", "test") for k in _PAIRED_KEYS]
    + ["target_clean", "target_source", "target_origin"]
    + ["source_names", "source_split", "tasks", "config"]
)


def load_all_in_one5(path: str | os.PathLike) -> AllInOne5:
    """Load an All-in-One-5 cache file written by ``build_all_in_one5``/``AllInOne5.save``.

    The file is read with ``allow_pickle=False`` and its SHA-256 content hash is recomputed.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated/corrupt, lacks arrays, or its hash does not match; the
            message names the file and says to delete it so that ``build_all_in_one5`` rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no All-in-One-5 cache file at {path}; build it with build_all_in_one5(...)"
        )
    advice = f"delete {path} and call build_all_in_one5(...) again to rebuild it"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(
            f"All-in-One-5 cache {path} is corrupt or truncated ({err}); {advice}"
        ) from err
    missing = [k for k in (*_REQUIRED_KEYS, "content_hash") if k not in arrays]
    if missing:
        raise ValueError(f"All-in-One-5 cache {path} lacks arrays {missing}; {advice}")
    stored = str(arrays.pop("content_hash"))
    actual = hash_arrays(arrays)
    if stored != actual:
        raise ValueError(
            f"All-in-One-5 cache {path} fails its content check (stored hash {stored[:12]}…, "
            f"actual {actual[:12]}…): the file is corrupt; {advice}"
        )
    try:
        params = json.loads(str(arrays["config"]))
        if params.pop("format_version") != FORMAT_VERSION:
            raise ValueError("format version differs")
        params["scales"] = tuple(params["scales"])
        config = BuildConfig(**params)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"All-in-One-5 cache {path} has an unusable config ({err}); {advice}"
        ) from err
    return AllInOne5(arrays=arrays, config=config, content_hash=actual)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where ``build_all_in_one5`` caches by default.

    ``$DRDD_EDU_CACHE_DIR`` if set; else ``<repo>/data/cache`` when the package is used from a
    source checkout (``pyproject.toml`` next to the package); else ``~/.cache/drdd_edu``.
    """
    env = os.environ.get("DRDD_EDU_CACHE_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root / "data" / "cache"
    return Path.home() / ".cache" / "drdd_edu"


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch ops on one CPU thread (restored afterwards).

    The build runs thousands of tiny ops; with several intra-op threads on a busy machine each
    op can wait for a descheduled worker thread (observed: 0.3 s → 6 s on 2 shared cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _build_arrays(cfg: BuildConfig, progress: bool) -> dict[str, np.ndarray]:
    """Run the whole construction (module docstring, steps 1–4) and return the arrays."""
    with _single_thread():
        return _build_arrays_impl(cfg, progress)


def _build_arrays_impl(cfg: BuildConfig, progress: bool) -> dict[str, np.ndarray]:
    names = list(SOURCES)
    per_split: dict[str, list[dict[str, Tensor]]] = {s: [] for s in SPLITS}
    for sid, name in enumerate(
        tqdm(names, desc="cutting patches", disable=not progress, leave=False)
    ):
        per_split[SOURCE_SPLIT[name]].append(_source_patches(name, sid, cfg))
    arrays: dict[str, np.ndarray] = {}
    for split_id, split in enumerate(SPLITS):
        parts = per_split[split]
        merged = {k: torch.cat([p[k] for p in parts]) for k in ("clean", "origin", "source")}
        if merged["clean"].shape[0] == 0:
            raise ValueError(f"the {split} split has no patches; lower size or min_patch_std")
        if split != "target":
            merged["task"] = _assign_tasks(merged["source"], cfg.seed, split_id)
            merged["degraded"] = _degrade_all(
                merged["clean"], merged["task"], cfg.seed, split_id, progress
            )
        for key, value in merged.items():
            arrays[f"{split}_{key}"] = np.ascontiguousarray(value.numpy())
    arrays["source_names"] = np.array(names)
    arrays["source_split"] = np.array([SOURCE_SPLIT[n] for n in names])
    arrays["tasks"] = np.array(TASKS)
    arrays["config"] = np.array(cfg.to_json())
    return arrays


def build_all_in_one5(
    size: int = 64,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    *,
    scales: Sequence[float] = (1.0, 0.75, 0.5),
    max_patches_per_image: int | None = None,
    max_short_side: int | None = 512,
    min_patch_std: float = 0.04,
    use_cache: bool = True,
    rebuild: bool = False,
    progress: bool = True,
) -> AllInOne5:
    """Build (or load from the cache) the All-in-One-5 benchmark; see the module docstring.

    Args:
        size: patch side in pixels (default 64).
        seed: seed of every random choice (task dealing, degradations, capping, fractions).
        cache_dir: directory of the ``.npz`` cache; ``None`` = ``default_cache_dir()``.
        scales: resize factors in ``(0, 1]``, each giving one patch grid per source.
        max_patches_per_image: keep at most this many patches per source (seeded choice);
            ``None`` keeps all. Use a small value (e.g. 10) for quick tests/notebooks.
        max_short_side: shrink sources whose shorter side exceeds this first (``None``: never).
        min_patch_std: drop patches whose pixel std (values in [0, 1]) is below this.
        use_cache: read/write the cache file; ``False`` builds in memory only.
        rebuild: ignore an existing cache file and overwrite it.
        progress: show tqdm progress bars.

    Returns:
        The ``AllInOne5`` benchmark (uint8 arrays, float accessors, ``content_hash``).

    Raises:
        ValueError: bad parameters, or a corrupt/mismatching cache file (delete it to rebuild).
        RuntimeError: a bundled source image could not be loaded.
    """
    cfg = BuildConfig(
        size=size,
        seed=seed,
        scales=tuple(scales),
        max_patches_per_image=max_patches_per_image,
        max_short_side=max_short_side,
        min_patch_std=min_patch_std,
    )
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / cfg.file_name()
    if use_cache and not rebuild and path.is_file():
        data = load_all_in_one5(path)
        if data.config != cfg:
            raise ValueError(
                f"cache file {path} holds a different configuration "
                f"({data.config}); delete it to rebuild"
            )
        return data
    arrays = _build_arrays(cfg, progress)
    data = AllInOne5(arrays=arrays, config=cfg, content_hash=hash_arrays(arrays))
    if use_cache:
        data.save(path)
    return data
