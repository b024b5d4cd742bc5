"""Training options of the DRDD-science studies (issue 14 C/D): the abundant unpaired pool, the
square's symmetries as augmentation, and a residual network that sees only the noisy state."""

from __future__ import annotations

import pytest
import torch

from drdd_edu.data import build_all_in_one5
from drdd_edu.train import TrainConfig, Trainer
from drdd_edu.train.batches import rotate_quarter_turns


@pytest.fixture(scope="module")
def data():
    return build_all_in_one5(size=16, max_patches_per_image=10, progress=False)


def test_unpaired_pool_is_every_clean_patch_outside_the_test_split(data):
    target = data.unpaired_pool("target")
    pool = data.unpaired_pool("all_clean")
    n_target, n_train = data.arrays["target_clean"].shape[0], data.arrays["train_clean"].shape[0]
    assert target.shape[0] == n_target and pool.shape[0] == n_target + n_train
    assert torch.equal(pool[:n_target], target)
    assert torch.equal(pool[n_target:], torch.from_numpy(data.arrays["train_clean"]))
    test = torch.from_numpy(data.arrays["test_clean"]).flatten(1)
    flat = pool.flatten(1)
    # no test patch is in the pool (the splits are disjoint by source photo)
    assert not any(bool((flat == row).all(dim=1).any()) for row in test[:20])
    with pytest.raises(ValueError, match="unknown unpaired pool 'test'"):
        data.unpaired_pool("test")


def test_quarter_turns_are_exact_rotations():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    turns = torch.tensor([1, 7])  # 7 ≡ 3 (mod 4)
    out = rotate_quarter_turns(x, turns)
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(-2, -1)))
    assert torch.equal(out[1], torch.rot90(x[1], 3, dims=(-2, -1)))
    assert torch.equal(rotate_quarter_turns(x, torch.zeros(2, dtype=torch.long)), x)
    with pytest.raises(ValueError, match="square"):
        rotate_quarter_turns(torch.zeros(1, 3, 4, 5), torch.zeros(1, dtype=torch.long))


def _cfg(**kw) -> TrainConfig:
    base = dict(
        image_size=16,
        max_patches_per_image=10,
        batch_size=4,
        steps=2,
        eval_every=0,
        out_dir="",
        progress=False,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_pool_and_rotations_in_the_noise_stage():
    noise = dict(stage="drdd_noise", objective="pred_noise", loss="l2", sum_scale=2.56)
    plain = Trainer(_cfg(**noise))
    pooled = Trainer(_cfg(**noise, unpaired_pool="all_clean", rot90=True))
    assert len(pooled.train_src) > len(plain.train_src)
    b = pooled.batch(0)
    assert b["x_in"] is None and b["x0"].shape == (4, 3, 16, 16)
    # rot90 off: the batches are the ones drawn before the option existed (same generator use)
    again = Trainer(_cfg(**noise, rot90=False)).batch(0)
    assert torch.equal(again["x0"], plain.batch(0)["x0"])
    assert torch.equal(again["noise"], plain.batch(0)["noise"])
    with pytest.raises(ValueError, match="unpaired_pool"):
        _cfg(stage="rddm", unpaired_pool="all_clean")
    with pytest.raises(ValueError, match="unknown unpaired_pool"):
        _cfg(**noise, unpaired_pool="everything")
    with pytest.raises(ValueError, match="rot90 must be true or false"):
        _cfg(rot90="yes")


def test_residual_net_that_sees_only_the_noisy_state():
    res = dict(stage="drdd_residual", objective="pred_res", loss="l2", sum_scale=1.0)
    blind = _cfg(**res, residual_sees_input=False)
    assert not blind.conditioned and _cfg(**res).conditioned
    trainer = Trainer(blind)
    assert not trainer.model.conditioned
    loss = trainer.train_step()["loss"]
    assert loss == loss and loss > 0  # finite: a NaN fails the first comparison
    x = torch.zeros(2, 3, 16, 16)
    # it ignores I_in: two different inputs give the same prediction
    with torch.no_grad():
        a = trainer.model(x, torch.tensor([5, 5]), torch.zeros_like(x))
        b = trainer.model(x, torch.tensor([5, 5]), torch.ones_like(x))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="residual_sees_input = false"):
        _cfg(stage="rddm", residual_sees_input=False)
