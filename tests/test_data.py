"""Tests for drdd_edu.data: sources, determinism, splits, task balance, fractions, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import drdd_edu.data as data_mod
from drdd_edu.data import (
    SOURCE_SPLIT,
    SOURCES,
    SPLITS,
    AllInOne5,
    build_all_in_one5,
    extract_patches,
    load_all_in_one5,
    load_source_image,
)
from drdd_edu.degradations import DEGRADATIONS, TASKS

# A small build: 32×32 patches, at most 10 per source (~110 patches, well under a second).
SMALL = {"size": 32, "seed": 0, "scales": (1.0, 0.5), "max_patches_per_image": 10}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> AllInOne5:
    return build_all_in_one5(cache_dir=tmp_path_factory.mktemp("cache"), progress=False, **SMALL)


def _cache_file(directory: Path) -> Path:
    files = list(directory.glob("*.npz"))
    assert len(files) == 1, files
    return files[0]


# ------------------------------------------------------------------------------------------
# sources and patches
# ------------------------------------------------------------------------------------------


def test_every_source_loads_offline_and_is_assigned() -> None:
    assert set(SOURCE_SPLIT) == set(SOURCES) and len(SOURCES) == 11
    assert set(SOURCE_SPLIT.values()) == set(SPLITS)
    for name in SOURCES:
        img = load_source_image(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= 256, name
    with pytest.raises(ValueError, match="unknown source"):
        load_source_image("lena")


def test_a_failing_source_raises(monkeypatch) -> None:
    def broken() -> np.ndarray:
        raise OSError("file missing")

    monkeypatch.setitem(SOURCES, "coffee", broken)
    with pytest.raises(RuntimeError, match="coffee.*file missing"):
        build_all_in_one5(use_cache=False, progress=False, **SMALL)


def test_extract_patches_grid() -> None:
    img = torch.rand(3, 100, 150)
    patches, origins = extract_patches(img, 32, scales=(1.0, 0.5))
    # scale 1: 3×4 grid centred at (2, 11); scale 0.5 (50×75): 1×2 grid centred at (9, 5)
    assert patches.shape == (14, 3, 32, 32)
    assert origins[0].tolist() == [0, 2, 11] and origins[11].tolist() == [0, 66, 107]
    assert origins[12].tolist() == [1, 9, 5] and origins[13].tolist() == [1, 9, 37]
    torch.testing.assert_close(patches[0], img[:, 2:34, 11:43])
    torch.testing.assert_close(patches[11], img[:, 66:98, 107:139])
    capped, _ = extract_patches(img, 32, scales=(1.0,), max_short_side=64)  # 64×96: 2×3 grid
    assert capped.shape[0] == 6


# ------------------------------------------------------------------------------------------
# determinism and cache
# ------------------------------------------------------------------------------------------


def test_build_is_deterministic_bytes_and_hash(small: AllInOne5, tmp_path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = build_all_in_one5(cache_dir=a_dir, progress=False, **SMALL)
    b = build_all_in_one5(cache_dir=b_dir, progress=False, **SMALL)
    assert a.content_hash == b.content_hash == small.content_hash
    assert _cache_file(a_dir).read_bytes() == _cache_file(b_dir).read_bytes()
    assert _cache_file(a_dir).name == _cache_file(b_dir).name
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    other = build_all_in_one5(use_cache=False, progress=False, **{**SMALL, "seed": 1})
    assert other.content_hash != a.content_hash


def test_cache_round_trip_and_reuse(small: AllInOne5, tmp_path, monkeypatch) -> None:
    built = build_all_in_one5(cache_dir=tmp_path, progress=False, **SMALL)
    path = _cache_file(tmp_path)
    assert "size32" in path.name and "seed0" in path.name and "max10" in path.name

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data_mod, "_build_arrays", no_rebuild)
    loaded = build_all_in_one5(cache_dir=tmp_path, progress=False, **SMALL)
    assert loaded.content_hash == built.content_hash and loaded.config == built.config
    assert loaded.tasks == TASKS
    torch.testing.assert_close(loaded.train_degraded, built.train_degraded)
    assert load_all_in_one5(path).content_hash == built.content_hash
    with np.load(path, allow_pickle=False) as npz:  # readable without pickle
        assert set(npz.files) >= {"train_clean", "train_degraded", "train_task", "content_hash"}


def test_corrupted_cache_gives_a_clear_error(small: AllInOne5, tmp_path) -> None:
    small.save(tmp_path / "x.npz")
    path = tmp_path / "x.npz"
    raw = bytearray(path.read_bytes())
    # 1) flip bytes inside the array data
    flipped = raw.copy()
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        flipped[i] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"corrupt.*delete .*x\.npz"):
        load_all_in_one5(path)
    # 2) truncated file
    path.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(ValueError, match=r"corrupt or truncated.*delete"):
        load_all_in_one5(path)
    # 3) not a zip file at all
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_all_in_one5(path)
    # 4) a well-formed file whose arrays were altered after hashing
    arrays = dict(small.arrays)
    arrays["train_degraded"] = arrays["train_degraded"].copy()
    arrays["train_degraded"][0, 0, 0, 0] ^= 1
    AllInOne5(arrays=arrays, config=small.config, content_hash=small.content_hash).save(path)
    with pytest.raises(ValueError, match="fails its content check"):
        load_all_in_one5(path)
    # 5) missing file
    with pytest.raises(FileNotFoundError, match="build_all_in_one5"):
        load_all_in_one5(tmp_path / "missing.npz")


def test_corrupt_cache_is_not_silently_rebuilt(tmp_path) -> None:
    build_all_in_one5(cache_dir=tmp_path, progress=False, **SMALL)
    path = _cache_file(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="delete"):
        build_all_in_one5(cache_dir=tmp_path, progress=False, **SMALL)
    rebuilt = build_all_in_one5(cache_dir=tmp_path, progress=False, rebuild=True, **SMALL)
    assert load_all_in_one5(path).content_hash == rebuilt.content_hash


# ------------------------------------------------------------------------------------------
# content: splits, tasks, degraded inputs
# ------------------------------------------------------------------------------------------


def test_splits_are_disjoint_by_source(small: AllInOne5) -> None:
    seen: dict[str, set[str]] = {}
    for split in SPLITS:
        seen[split] = set(small.sources_of(split))
        assert seen[split] == {n for n, s in SOURCE_SPLIT.items() if s == split}
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["target"])
    assert not (seen["test"] & seen["target"])
    # the target domain is clean only
    assert "target_degraded" not in small.arrays and "target_task" not in small.arrays


def test_shapes_dtypes_and_ranges(small: AllInOne5) -> None:
    n_train = small.arrays["train_clean"].shape[0]
    assert small.arrays["train_clean"].dtype == np.uint8
    for name in ("train_clean", "train_degraded", "test_clean", "test_degraded", "target_clean"):
        x = getattr(small, name)
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert small.train_task.shape == (n_train,) and small.train_task.dtype == torch.int64
    assert n_train == 10 * 6  # 6 train sources, capped at 10 patches each
    assert len(repr(small)) < 200 and "train" in small.summary()


def test_tasks_are_balanced_overall_and_per_source(small: AllInOne5) -> None:
    for split in ("train", "test"):
        task = small.arrays[f"{split}_task"]
        counts = np.bincount(task, minlength=5)
        assert counts.max() - counts.min() <= 1, counts
        for sid in np.unique(small.arrays[f"{split}_source"]):
            per_source = np.bincount(task[small.arrays[f"{split}_source"] == sid], minlength=5)
            assert per_source.max() - per_source.min() <= 1, (sid, per_source)


def test_degraded_inputs_use_per_sample_seeds(small: AllInOne5) -> None:
    clean, degraded, task = small.test_clean, small.test_degraded, small.test_task
    for i in (0, 7, len(task) - 1):
        gen = torch.Generator().manual_seed(data_mod._sample_seed(0, SPLITS.index("test"), i))
        again = DEGRADATIONS[TASKS[int(task[i])]](clean[i : i + 1], generator=gen)[0]
        stored = torch.from_numpy(small.arrays["test_degraded"][i])
        assert torch.equal(data_mod._to_u8(again), stored)
    mse = (clean - degraded).pow(2).flatten(1).mean(1)
    assert float((mse > 0).float().mean()) > 0.95  # (nearly) every input is degraded


# ------------------------------------------------------------------------------------------
# fractions and datasets
# ------------------------------------------------------------------------------------------


def test_fractions_are_nested_stratified_and_deterministic(small: AllInOne5) -> None:
    task = small.train_task
    n_per_task = torch.bincount(task, minlength=5)
    previous: set[int] = set()
    for fraction in (0.25, 0.5, 0.75, 1.0):
        idx = small.subset_indices("train", fraction)
        assert torch.equal(idx, small.subset_indices("train", fraction))  # deterministic
        assert set(idx.tolist()) >= previous  # nested
        previous = set(idx.tolist())
        expected = torch.floor(fraction * n_per_task + 0.5).clamp_min(1)
        assert torch.equal(torch.bincount(task[idx], minlength=5), expected.long())  # stratified
    assert previous == set(range(len(task)))
    sub = small.paired_subset("train", 0.5)
    assert torch.equal(sub.task, task[sub.index])
    torch.testing.assert_close(sub.clean, small.train_clean[sub.index])
    for bad in (0.0, 1.5, -0.25):
        with pytest.raises(ValueError, match="fraction"):
            small.subset_indices("train", bad)
    with pytest.raises(ValueError, match="split"):
        small.paired_subset("val")


def test_fraction_subsets_are_stable_in_a_rebuild(small: AllInOne5) -> None:
    again = build_all_in_one5(use_cache=False, progress=False, **SMALL)
    for fraction in (0.25, 0.75):
        assert torch.equal(
            small.subset_indices("train", fraction), again.subset_indices("train", fraction)
        )


def test_datasets_and_dataloader(small: AllInOne5) -> None:
    ds = small.paired_subset("test")
    clean, degraded, task = ds[3]
    assert clean.shape == degraded.shape == (3, 32, 32) and clean.dtype == torch.float32
    assert task.dtype == torch.int64 and task.ndim == 0
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert batch[0].shape == (8, 3, 32, 32) and batch[2].shape == (8,)
    torch.testing.assert_close(batch[1], small.test_degraded[:8])
    target = small.target_dataset()
    assert len(target) == small.arrays["target_clean"].shape[0]
    assert target[0].shape == (3, 32, 32)
    flipped = small.paired_subset("train", hflip=True)
    torch.manual_seed(0)
    items = [flipped[0][0] for _ in range(20)]
    assert any(torch.equal(x, small.train_clean[0].flip(-1)) for x in items)
    assert any(torch.equal(x, small.train_clean[0]) for x in items)


def test_bad_build_parameters(tmp_path) -> None:
    for kwargs, match in [
        ({"size": 4}, "size"),
        ({"seed": -1}, "seed"),
        ({"scales": (1.0, 1.5)}, "scales"),
        ({"scales": ()}, "scales"),
        ({"max_patches_per_image": 0}, "max_patches_per_image"),
        ({"min_patch_std": -1.0}, "min_patch_std"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_all_in_one5(cache_dir=tmp_path, progress=False, **kwargs)
    assert not list(tmp_path.iterdir())


def test_default_build_sizes() -> None:
    """The default benchmark (64×64, three scales, all patches), built in memory."""
    full = build_all_in_one5(use_cache=False, progress=False)
    sizes = {s: full.arrays[f"{s}_clean"].shape[0] for s in SPLITS}
    assert sizes == {"train": 668, "test": 279, "target": 228}
    assert np.bincount(full.arrays["train_task"]).min() >= 130
