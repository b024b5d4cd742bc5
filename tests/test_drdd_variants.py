"""DRDD's three variants (issue 14 B): ``drdd`` (unconditional denoiser on unpaired clean images,
the paper's text), ``drdd_cond`` (denoiser conditioned on I_in and trained on pairs, the paper's
code) and ``drdd_exact`` (no denoiser: the injected noise is known and subtracted exactly)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from small_training import small_config, small_data

from drdd_edu.diffusion import q_sample_noise_stage
from drdd_edu.experiments.evaluation import (
    evaluate_noise_stage_per_task,
    evaluate_per_task,
)
from drdd_edu.samplers import sample_drdd, sample_drdd_exact
from drdd_edu.schedules import rddm_schedule
from drdd_edu.train import TrainConfig, Trainer, model_from_checkpoint

NOISE = dict(stage="drdd_noise", objective="pred_noise", loss="l2", sum_scale=1.0)


def test_noise_conditioned_is_validated():
    assert not TrainConfig(**NOISE).conditioned
    assert TrainConfig(**NOISE, noise_conditioned=True).conditioned
    with pytest.raises(ValueError, match="needs stage = 'drdd_noise'"):
        TrainConfig(noise_conditioned=True).validate()
    with pytest.raises(ValueError, match="true or false"):
        TrainConfig(**NOISE, noise_conditioned="yes").validate()
    # a conditioned denoiser trains on pairs, so it may select tasks; the unconditional may not
    TrainConfig(**NOISE, noise_conditioned=True, tasks=("rain",)).validate()
    with pytest.raises(ValueError, match="tasks selects paired"):
        TrainConfig(**NOISE, tasks=("rain",)).validate()


def test_conditioned_denoiser_trains_on_pairs_and_sees_the_input(cache_dir, tmp_path):
    cfg = small_config(cache_dir, tmp_path / "cond", **NOISE, noise_conditioned=True, steps=2)
    trainer = Trainer(cfg)
    assert trainer.train_src.degraded is not None  # pairs, not the unpaired pool
    data = small_data(cache_dir)
    assert trainer.train_src.clean.shape[0] == data.arrays["train_clean"].shape[0]
    assert trainer.model.conditioned
    b = trainer.batch(0)
    assert b["x_in"] is not None
    # the loss is (D1) with the degraded input concatenated: computed by hand
    x_t = q_sample_noise_stage(b["x0"], b["t"], trainer.schedule, b["noise"])
    by_hand = F.mse_loss(trainer.net(x_t, b["t"], b["x_in"]).float(), b["noise"])
    assert float(trainer.loss_on(b).detach()) == pytest.approx(float(by_hand.detach()), rel=1e-6)
    # the input matters: another I_in changes the prediction
    other = trainer.net(x_t, b["t"], torch.zeros_like(b["x_in"]))
    assert not torch.allclose(other, trainer.net(x_t, b["t"], b["x_in"]))
    trainer.run()
    model, loaded, _ = model_from_checkpoint(tmp_path / "cond" / "checkpoints" / "ckpt_00000002.pt")
    assert loaded.noise_conditioned and model.conditioned


def test_sample_drdd_passes_the_input_to_a_conditioned_denoiser():
    sch = rddm_schedule(100, sum_scale=1.0)
    x_in = torch.randn(2, 3, 8, 8)
    seen = []

    def noise_model(x, t, *cond):
        seen.append(len(cond) == 1 and torch.equal(cond[0], x_in))
        return torch.zeros_like(x)

    zero_res = lambda x, t, xi: torch.zeros_like(x)  # noqa: E731
    sample_drdd(zero_res, noise_model, x_in, sch, sch, 1, 2, noise_conditioned=True)
    assert seen == [True, True]
    seen.clear()
    sample_drdd(zero_res, noise_model, x_in, sch, sch, 1, 2)
    assert seen == [False, False]  # unconditional: called as noise_model(x_t, t)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_exact_variant_recovers_the_clean_image_with_the_oracle(steps):
    sch = rddm_schedule(1000, sum_scale=1.0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    x_in = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    oracle = lambda x, t, xi: x_in - x0  # noqa: E731 — the true residual
    out = sample_drdd_exact(oracle, x_in, sch, steps, noise_strength=0.8, generator=g)
    assert torch.allclose(out, x0, atol=1e-12)
    # a residual net that predicts nothing leaves the degraded input: nothing removed
    zero = lambda x, t, xi: torch.zeros_like(x)  # noqa: E731
    assert torch.allclose(sample_drdd_exact(zero, x_in, sch, steps, 0.8), x_in, atol=1e-12)
    with pytest.raises(ValueError, match="noise_strength"):
        sample_drdd_exact(oracle, x_in, sch, steps, noise_strength=0.0)


def test_noise_stage_evaluation_uses_the_same_patches_as_the_methods(cache_dir):
    data = small_data(cache_dir)
    same = evaluate_per_task(lambda x, g: x, data, 2, seed=3, image_size=16)
    noisy = evaluate_noise_stage_per_task(lambda y, x_in: y, data, 2, 1.0, seed=3, image_size=16)
    for task in same:
        assert noisy[task]["psnr_in"] == pytest.approx(same[task]["psnr_in"], abs=1e-9)
        assert noisy[task]["n"] == same[task]["n"]
    # doing nothing to I_0 + σ·z scores like σ = 1 noise (std 0.5 on [0, 1]), clamped: ≈ 7–10 dB
    assert 6.0 < noisy["average"]["psnr"] < 11.0
    # a perfect denoiser is impossible to call here (it never sees I_0); the mean image is worse
    # than the input on PSNR but far better than the noisy image
    mean = evaluate_noise_stage_per_task(
        lambda y, x_in: torch.zeros_like(y), data, 2, 1.0, seed=3, image_size=16
    )
    assert mean["average"]["psnr"] > noisy["average"]["psnr"]
