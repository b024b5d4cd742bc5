"""Checkpoints: round trip, weights-only loading, atomic writes, clear errors, rotation."""

import json
import os
import random
import stat

import numpy as np
import pytest
import torch

from drdd_edu import checkpoint as ck
from drdd_edu.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_config,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    rotate_checkpoints,
    save_checkpoint,
)

CONFIG = {"preset": "tiny", "lr": 1e-3, "betas": [0.9, 0.99], "steps": 10}


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    ema = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()  # populate the optimiser state
    return model, ema, opt


def _save(path, step=5, seed=0, **kw):
    model, ema, opt = _parts(seed)
    save_checkpoint(path, model=model, ema=ema, optimizer=opt, step=step, config=CONFIG, **kw)
    return model, ema, opt


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt_00000005.pt"
    model, ema, opt = _save(path, extra={"eval": {"psnr": 20.5}})
    out = load_checkpoint(path)
    assert out["step"] == 5 and out["format_version"] == ck.FORMAT_VERSION
    assert out["config_dict"] == CONFIG and json.loads(out["config"]) == CONFIG
    for k, v in model.state_dict().items():
        assert torch.equal(out["model"][k], v)
    for k, v in ema.state_dict().items():
        assert torch.equal(out["ema"][k], v)
    opt2 = torch.optim.AdamW(_parts(1)[0].parameters(), lr=1e-3)
    opt2.load_state_dict(out["optimizer"])
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
    assert out["extra"] == {"eval": {"psnr": 20.5}}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_file_mode_follows_the_umask(tmp_path, umask):
    """A checkpoint is readable by whoever may read other new files (mkstemp alone gives 0600,
    which hides shared-cluster runs from colleagues)."""
    old = os.umask(umask)
    try:
        path = tmp_path / "ckpt_00000005.pt"
        _save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_weights_only_loadable(tmp_path):
    path = tmp_path / "c.pt"
    _save(path)
    raw = torch.load(path, weights_only=True)  # must not need pickled classes
    assert set(raw) >= {"model", "ema", "optimizer", "rng", "step", "config", "format_version"}
    assert isinstance(raw["config"], str)


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt_00000001.pt"
    _save(path, step=1)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # partial bytes, then the writer dies
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        _save(path, step=2, seed=3)
    monkeypatch.undo()
    assert path.read_bytes() == before  # untouched
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_truncated_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt_00000003.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"this is not a checkpoint at all\n" * 10])
def test_garbage_file_raises_checkpoint_error(tmp_path, payload):
    path = tmp_path / "ckpt_00000003.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint_and_wrong_version(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="lacks the keys"):
        load_checkpoint(other)
    path = tmp_path / "c.pt"
    _save(path)
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_config_mismatch(tmp_path):
    path = tmp_path / "c.pt"
    _save(path)
    load_checkpoint(path, expected_config={**CONFIG, "betas": (0.9, 0.99)})  # tuple == list
    load_checkpoint(path, expected_config={**CONFIG, "steps": 20}, ignore_keys={"steps"})
    with pytest.raises(CheckpointError, match="config mismatch.*lr"):
        load_checkpoint(path, expected_config={**CONFIG, "lr": 2e-3})
    with pytest.raises(CheckpointError, match="seed"):
        check_config(CONFIG, {**CONFIG, "seed": 1})


def test_latest_and_rotation(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (10, 2, 30, 4):
        _save(checkpoint_path(tmp_path, step), step=step)
    (tmp_path / ".ckpt-tmp-junk.pt").write_bytes(b"x")  # a crashed writer's temp file
    (tmp_path / "notes.txt").write_text("hi")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4, 10, 30]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 30)
    removed = rotate_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 30]
    assert rotate_checkpoints(tmp_path, keep_last=0) == []
    assert ck.remove_stale_temp_files(tmp_path)[0].name == ".ckpt-tmp-junk.pt"
    with pytest.raises(ValueError, match="keep_last"):
        rotate_checkpoints(tmp_path, keep_last=-1)
