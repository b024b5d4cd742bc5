"""Training: configs, objectives and DRDD stages, exact resume after SIGKILL, DDP equivalence,
corrupt checkpoints on resume, and the train/sample/evaluate/bench commands."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from small_training import SMALL_TRAIN, small_config, small_data

from drdd_edu.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from drdd_edu.train import (
    ResumeDeviceWarning,
    TrainConfig,
    Trainer,
    batch_indices,
    list_configs,
    load_config,
    model_from_checkpoint,
)
from drdd_edu.train_cli import add_commands, dispatch, main

BASE = SMALL_TRAIN
_cfg = small_config


def _write_toml(path: Path, cfg: TrainConfig) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.to_dict().items()]  # JSON ⊂ TOML here
    path.write_text("\n".join(lines) + "\n")
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drdd_edu.train_cli", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _states(path: Path) -> dict[str, dict]:
    ck = torch.load(path, weights_only=True)
    return {"model": ck["model"], "ema": ck["ema"], "optimizer": ck["optimizer"]["state"]}


def _assert_equal_states(a: dict, b: dict) -> None:
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    for i in a["optimizer"]:
        for k, v in a["optimizer"][i].items():
            assert torch.equal(v, b["optimizer"][i][k]), f"optimizer state {i}.{k} differs"


# ----------------------------------------------------------------------------- configs


def test_bundled_configs_load():
    names = list_configs()
    for want in ("tiny-cpu", "small-cpu", "full-gpu", "drdd-noise-tiny", "drdd-residual-tiny"):
        assert want in names
        cfg = load_config(want)
        assert cfg.name == want
    full = load_config("full-gpu")
    assert (full.preset, full.image_size, full.batch_size, full.amp, full.compile) == (
        "rddm",
        64,
        64,
        "bf16",
        True,
    )
    assert load_config("drdd-noise-tiny").stage == "drdd_noise"
    assert load_config("drdd-residual-tiny").objective == "pred_res"
    assert load_config("tiny-cpu", steps=7).steps == 7


def test_tiny_restore_config_is_tiny_cpu_with_sm_res_and_low_noise():
    """The tiny-restore recipe: tiny-cpu except SM-Res, sum_scale 0.01, a larger loss weight on
    blur and the run length (and how often it evaluates and saves)."""
    restore, base = load_config("tiny-restore"), load_config("tiny-cpu")
    assert restore.name == "tiny-restore"
    assert (restore.preset, restore.objective, restore.stage) == ("tiny", "pred_res", "rddm")
    assert math.isclose(restore.sum_scale, 0.01) and math.isclose(base.sum_scale, 1.0)
    # β̄_T = sqrt(sum_scale): the sampler starts from I_in + 0.1·z
    assert math.isclose(float(restore.make_schedule().betas2_cumsum[-1]) ** 0.5, 0.1, rel_tol=1e-4)
    differ = {
        k
        for k, v in restore.to_dict().items()
        if k
        not in (
            "name",
            "objective",
            "sum_scale",
            "task_weights",
            "steps",
            "eval_every",
            "ckpt_every",
        )
        and v != base.to_dict()[k]
    }
    assert not differ, differ
    from drdd_edu.degradations import TASKS

    weights = dict(zip(TASKS, restore.task_weights, strict=True))
    assert weights["blur"] > 1 and all(w == 1 for t, w in weights.items() if t != "blur")


def test_tiny_restore_cosine_config_is_tiny_restore_with_a_decaying_lr():
    """The tiny-restore-cosine recipe: tiny-restore with a cosine lr decay, a slower EMA,
    its run length and its evaluation/checkpoint cadence, nothing else."""
    cosine, base = load_config("tiny-restore-cosine"), load_config("tiny-restore")
    assert cosine.name == "tiny-restore-cosine"
    assert (cosine.lr_schedule, base.lr_schedule) == ("cosine", "constant")
    assert math.isclose(cosine.lr_min, 1e-5) and math.isclose(cosine.ema_decay, 0.999)
    assert cosine.lr_at(cosine.steps - 1) < 1.1 * cosine.lr_min  # the lr has decayed at the end
    allowed = {
        "name",
        "lr_schedule",
        "lr_min",
        "ema_decay",
        "steps",
        "eval_every",
        "eval_images",
        "ckpt_every",
        "keep_last",
    }
    a, b = cosine.to_dict(), base.to_dict()
    differ = {k for k in a if k not in allowed and a[k] != b[k]}
    assert not differ, differ


def test_tiny_restore_all_config_is_tiny_restore_cosine_on_all_pairs():
    """The tiny-restore-all recipe: tiny-restore-cosine on the uncapped training split, longer,
    with a 2× (not 4×) blur weight and its own cadence, nothing else."""
    every, cosine = load_config("tiny-restore-all"), load_config("tiny-restore-cosine")
    assert every.name == "tiny-restore-all" and every.max_patches_per_image == 0
    assert every.steps == 4000 and tuple(every.task_weights) == (1.0, 1.0, 1.0, 2.0, 1.0)
    assert every.lr_at(every.steps - 1) < 1.1 * every.lr_min  # the cosine spans the longer run
    allowed = {"name", "max_patches_per_image", "steps", "task_weights", "eval_every", "ckpt_every"}
    a, b = every.to_dict(), cosine.to_dict()
    differ = {k for k in a if k not in allowed and a[k] != b[k]}
    assert not differ, differ


@pytest.mark.parametrize(
    "recipe, changes",
    [
        ("recipes/identity-0.25", {"identity_fraction": 0.25, "steps": 12000}),
        (
            "recipes/identity-0.4-blur4",
            {
                "identity_fraction": 0.4,
                "task_weights": (1.0, 1.0, 1.0, 4.0, 1.0),
                "rot90": True,
                "steps": 9000,
            },
        ),
        ("recipes/small-all", {"preset": "small", "steps": 6000}),
        ("specialists/tiny-blur", {"tasks": ("blur",), "task_weights": (), "steps": 6000}),
    ],
)
def test_measured_recipes_are_tiny_restore_all_with_their_documented_changes(recipe, changes):
    """The TOML files beside data/checkpoints/README.md's table differ from the bundled
    tiny-restore-all only where the table says (and in name, cadence and output)."""
    from drdd_edu.notebook import REPO_ROOT

    cfg = TrainConfig.from_toml(REPO_ROOT / "data" / "checkpoints" / f"{recipe}.toml")
    base = load_config("tiny-restore-all")
    a, b = cfg.to_dict(), base.to_dict()
    for key, value in changes.items():
        assert a[key] == (list(value) if isinstance(value, tuple) else value), key
    cadence = {"name", "eval_every", "ckpt_every"}
    differ = {k for k in a if k not in cadence and k not in changes and a[k] != b[k]}
    assert not differ, differ


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"preset": "huge"}, "unknown preset"),
        ({"objective": "pred_x0"}, "unknown objective"),
        ({"stage": "ddpm"}, "unknown stage"),
        ({"steps": 0}, "steps must be an int ≥ 1"),
        ({"batch_size": 0}, "batch_size must be an int ≥ 1"),
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"data_fraction": 1.5}, "data_fraction"),
        ({"loss": "huber"}, "unknown loss"),
        ({"amp": "fp16"}, "unknown amp"),
        ({"image_size": 18}, "divisible by 4"),
        ({"stage": "drdd_noise", "objective": "pred_res"}, "pred_noise"),
        ({"stage": "drdd_residual", "objective": "pred_noise"}, "pred_res"),
        ({"objective": "pred_res", "two_networks": True}, "two_networks"),
        ({"objective": "pred_noise"}, "schedule = 'ddim'"),
        ({"schedule": "cosine"}, "unknown schedule"),
        ({"compile_mode": "fast"}, "unknown compile_mode"),
        ({"task_weights": (1, 1, 1)}, "task_weights must be 5 finite numbers"),
        ({"task_weights": (1, 1, 1, -1, 1)}, "task_weights must be 5 finite numbers"),
        ({"task_weights": (1, 1, 1, float("nan"), 1)}, "task_weights must be 5 finite"),
        ({"task_weights": 2.0}, "task_weights must be a list of numbers"),
        ({"task_weights": (0, 0, 0, 0, 0)}, "every trained task weight 0"),
        ({"task_weights": (1, 0, 0, 0, 0), "tasks": ("rain",)}, "every trained task weight 0"),
        ({"task_weights": (1, 1, 1, 2, 1), "dataset": "synthetic"}, "needs dataset"),
        ({"lr_schedule": "linear"}, "unknown lr_schedule"),
        ({"identity_fraction": 1.5}, r"identity_fraction must be a finite number in \[0.0, 1.0\]"),
        ({"identity_fraction": -0.1}, "identity_fraction must be a finite number"),
        (
            {"identity_fraction": 0.2, "stage": "drdd_noise", "objective": "pred_noise"},
            "identity_fraction replaces degraded inputs",
        ),
        ({"identity_fraction": 0.2, "dataset": "synthetic"}, "identity_fraction replaces"),
        (
            {"lr_schedule": "cosine", "lr_min": 2e-3},
            r"lr_min must be a finite number in \[0.0, 0.001\]",
        ),
        ({"lr_schedule": "cosine", "lr_min": -1e-5}, "lr_min must be a finite number"),
        ({"lr_min": 1e-5}, "lr_min .* is the cosine schedule's final learning rate"),
    ],
)
def test_bad_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**BASE, **changes})


def test_toml_errors(tmp_path):
    (tmp_path / "bad.toml").write_text('presett = "tiny"\n')
    with pytest.raises(ValueError, match="unknown config keys.*presett"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("steps = = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")
    with pytest.raises(FileNotFoundError, match="tiny-cpu"):
        load_config("no-such-config")


def test_batch_indices_are_a_function_of_seed_and_step():
    n, B = 10, 4
    a = batch_indices(0, 3, B, n)
    assert torch.equal(a, batch_indices(0, 3, B, n))
    assert not torch.equal(a, batch_indices(1, 3, B, n))
    # an epoch (steps covering positions 0..n−1 of a permutation) visits every item once
    first_epoch = torch.cat([batch_indices(0, s, 5, n) for s in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(n))


# ----------------------------------------------------------------------------- training


def test_tiny_config_trains_and_loss_falls(cache_dir):
    cfg = _cfg(cache_dir, steps=50, batch_size=8, lr=2e-3, loss="l2", objective="pred_res")
    losses = [s["loss"] for s in Trainer(cfg).steps()]
    assert len(losses) == 50 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize(
    "changes",
    [
        {"objective": "pred_res"},
        {"objective": "pred_noise", "loss": "l2", "schedule": "ddim"},
        {"objective": "pred_res_noise"},
        {"objective": "pred_res_noise", "two_networks": True, "time_mode": "coefficients"},
        {"stage": "drdd_noise", "objective": "pred_noise", "loss": "l2"},
        {"stage": "drdd_residual", "objective": "pred_res", "noise_strength": 1.0},
        {"amp": "bf16", "channels_last": True},
        {"data_fraction": 0.5, "data_size": 0, "hflip": False},
    ],
    ids=["res", "noise", "res_noise", "two_nets", "drdd_noise", "drdd_residual", "bf16", "frac"],
)
def test_objectives_and_stages_run(cache_dir, tmp_path, changes):
    cfg = _cfg(cache_dir, tmp_path / "run", steps=2, eval_every=2, **changes)
    trainer = Trainer(cfg)
    states = list(trainer.steps())
    assert [s["step"] for s in states] == [1, 2]
    assert all(math.isfinite(s["loss"]) and s["grad_norm"] >= 0 for s in states)
    assert set(states[-1]["eval"]) == {"psnr", "ssim", "psnr_in", "ssim_in"}
    assert all(math.isfinite(v) for v in states[-1]["eval"].values())
    assert Path(states[-1]["checkpoint"]).is_file()  # the last step always checkpoints
    assert trainer.model.conditioned == (cfg.stage != "drdd_noise")
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2


def test_task_weights_weigh_each_sample_loss_by_its_task(cache_dir):
    """With ``task_weights`` the batch loss is Σ w_task(i)·L_i / Σ w (L_i: sample i's own mean
    loss); all weights 1 give the plain mean; a weight-0 task does not move the loss."""
    from drdd_edu.degradations import TASKS

    weights = (1.0, 2.0, 3.0, 4.0, 5.0)
    tr = Trainer(_cfg(cache_dir, batch_size=8, objective="pred_res", task_weights=weights))
    plain_tr = Trainer(_cfg(cache_dir, batch_size=8, objective="pred_res"))
    plain_tr.model.load_state_dict(tr.model.state_dict())
    b = tr.batch(0)
    idx = batch_indices(0, 0, 8, len(tr.train_src))
    ids = tr.train_src.task[idx]
    assert len(set(ids.tolist())) >= 2  # the batch mixes tasks: the weighting is visible
    names = tr.train_src.task_names
    want_w = torch.tensor([weights[TASKS.index(names[k])] for k in ids.tolist()])
    torch.testing.assert_close(b["weight"], want_w)
    assert "weight" not in plain_tr.batch(0)
    with torch.no_grad():
        per = torch.stack(
            [
                plain_tr.loss_on({k: v[i : i + 1] for k, v in b.items() if k != "weight"})
                for i in range(8)
            ]
        )
        got = tr.loss_on(b)
        plain = plain_tr.loss_on({k: v for k, v in b.items() if k != "weight"})
        ones = tr.loss_on({**b, "weight": torch.ones(8)})
    torch.testing.assert_close(got, (want_w * per).sum() / want_w.sum(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ones, plain, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plain, per.mean(), rtol=1e-5, atol=1e-7)
    assert not math.isclose(float(got), float(plain), rel_tol=1e-4)  # the weights changed it
    # a task with weight 0 drops out: its samples' losses do not enter
    zero = torch.where(ids == ids[0], 0.0, 1.0)
    with torch.no_grad():
        dropped = tr.loss_on({**b, "weight": zero})
    keep = zero > 0
    torch.testing.assert_close(dropped, per[keep].mean(), rtol=1e-5, atol=1e-7)
    tr.run()  # and it trains
    assert tr.step == tr.config.steps


def test_identity_fraction_replaces_inputs_by_their_targets(cache_dir):
    """``identity_fraction`` p: each sample's I_in becomes its I_0 (I_res = 0) with probability
    p; the clean images, their order and the other inputs are the run's usual ones; p = 0 (the
    default) draws nothing, so existing runs keep their whole batches (t and ε included)."""
    base = Trainer(_cfg(cache_dir, batch_size=32, objective="pred_res"))
    some = Trainer(_cfg(cache_dir, batch_size=32, objective="pred_res", identity_fraction=0.5))
    every = Trainer(_cfg(cache_dir, batch_size=32, objective="pred_res", identity_fraction=1.0))
    b0, b, b1 = base.batch(3), some.batch(3), every.batch(3)
    torch.testing.assert_close(b["x0"], b0["x0"], rtol=0, atol=0)
    same = (b["x_in"] == b["x0"]).flatten(1).all(dim=1)
    already = (b0["x_in"] == b0["x0"]).flatten(1).all(dim=1)  # (a flat patch blurs to itself)
    assert int(already.sum()) <= 4 and 4 <= int((same & ~already).sum()) <= 28  # about half
    torch.testing.assert_close(b["x_in"][~same], b0["x_in"][~same], rtol=0, atol=0)
    assert torch.equal(b1["x_in"], b1["x0"])
    default = Trainer(_cfg(cache_dir, batch_size=32, objective="pred_res", identity_fraction=0.0))
    for key, value in default.batch(3).items():
        torch.testing.assert_close(value, b0[key], rtol=0, atol=0)
    some.run()  # and it trains
    assert some.step == some.config.steps


def test_drdd_noise_stage_uses_unpaired_target_images_only(cache_dir):
    trainer = Trainer(_cfg(cache_dir, stage="drdd_noise", objective="pred_noise"))
    assert trainer.train_src.degraded is None  # clean target-domain images, no pairs
    data = small_data(cache_dir)
    assert torch.equal(trainer.train_src.clean, torch.from_numpy(data.arrays["target_clean"]))
    assert trainer.batch(0)["x_in"] is None


def test_run_with_crops_and_warmup(cache_dir, tmp_path):
    # 16² patches, random 8² crops
    cfg = _cfg(cache_dir, tmp_path / "r", steps=3, warmup_steps=2, image_size=8, data_size=16)
    trainer = Trainer(cfg)
    assert trainer.batch(0)["x0"].shape == (4, 3, 8, 8)
    assert trainer.lr_at(0) == pytest.approx(5e-4) and trainer.lr_at(5) == pytest.approx(1e-3)
    last = trainer.run()
    assert last["step"] == 3


def test_lr_schedules_constant_and_cosine():
    """Warm-up then constant (the default, what every run before the option had), or half a
    cosine from lr down to lr_min at the last step; a stored config without the keys reads as
    the constant schedule."""
    from drdd_edu.train import with_config_defaults

    lr, lr_min, w, steps = 1e-3, 1e-5, 10, 110
    const = TrainConfig(**{**BASE, "lr": lr, "warmup_steps": w, "steps": steps})
    cos = const.replace(lr_schedule="cosine", lr_min=lr_min)
    assert (const.lr_schedule, const.lr_min) == ("constant", 0.0)
    for k in range(w):  # the same linear warm-up: lr·(k + 1)/w
        assert const.lr_at(k) == pytest.approx(lr * (k + 1) / w)
        assert cos.lr_at(k) == pytest.approx(lr * (k + 1) / w)
    assert all(const.lr_at(k) == pytest.approx(lr) for k in range(w, steps + 5))
    assert cos.lr_at(w) == pytest.approx(lr)  # the cosine starts where the warm-up ends
    assert cos.lr_at(w + (steps - w) // 2) == pytest.approx((lr + lr_min) / 2)  # half-way
    quarter = lr_min + (lr - lr_min) * (1 + math.cos(math.pi / 4)) / 2
    assert cos.lr_at(w + (steps - w) // 4) == pytest.approx(quarter)
    after = [cos.lr_at(k) for k in range(w, steps)]
    assert all(a > b for a, b in zip(after[:-1], after[1:], strict=True))  # decreasing
    last = lr_min + (lr - lr_min) * (1 + math.cos(math.pi * (steps - 1 - w) / (steps - w))) / 2
    assert cos.lr_at(steps - 1) == pytest.approx(last)  # the last step: just above lr_min
    assert lr_min < cos.lr_at(steps - 1) < lr_min + 1e-3 * lr
    assert cos.lr_at(steps + 100) == pytest.approx(lr_min)  # clipped past the end
    no_warmup = cos.replace(warmup_steps=0)
    assert no_warmup.lr_at(0) == pytest.approx(lr)
    # a checkpoint written before the option existed: constant schedule, lr_min 0
    stored = {k: v for k, v in const.to_dict().items() if k not in ("lr_schedule", "lr_min")}
    filled = with_config_defaults(stored)
    assert (filled["lr_schedule"], filled["lr_min"]) == ("constant", 0.0)
    assert filled == const.to_dict()


def test_trainer_follows_the_cosine_schedule_and_resume_keeps_its_steps(cache_dir, tmp_path):
    """The optimiser steps with the config's lr_at(step); a cosine run's schedule is fixed by
    its steps, so resuming it with other steps is refused (a constant one may be extended)."""
    cfg = _cfg(cache_dir, tmp_path / "c", steps=4, warmup_steps=1, ckpt_every=2)
    cfg = cfg.replace(lr_schedule="cosine", lr_min=1e-4)
    trainer = Trainer(cfg)
    seen = [(s["lr"], trainer.optimizer.param_groups[0]["lr"]) for s in trainer.steps()]
    want = [cfg.lr_at(k) for k in range(4)]
    assert [a for a, _ in seen] == pytest.approx(want)
    assert [b for _, b in seen] == pytest.approx(want)  # what the optimiser really used
    assert want[1] == pytest.approx(1e-3) and want[3] < want[2] < want[1]
    with pytest.raises(CheckpointError, match="config mismatch.*steps: checkpoint 4 vs now 6"):
        Trainer(cfg.replace(steps=6), resume=True)
    resumed = Trainer(cfg, resume=True)  # the same steps: fine
    assert resumed.step == 4


def test_run_progress_bar_option(cache_dir, capsys):
    """run() shows its bar per config.progress unless told otherwise (experiments nest it)."""
    Trainer(_cfg(cache_dir, steps=2)).run()  # progress = False in the config
    assert "train t" not in capsys.readouterr().err
    last = Trainer(_cfg(cache_dir, steps=2)).run(progress=True, leave=False)
    assert last["step"] == 2 and "train t" in capsys.readouterr().err


def test_per_sample_crop():
    from drdd_edu.train.batches import _crop

    x = torch.randn(3, 2, 6, 6)
    top, left = torch.tensor([0, 2, 1]), torch.tensor([1, 0, 2])
    out = _crop(x, top, left, 4)
    for i in range(3):
        assert torch.equal(out[i], x[i, :, top[i] : top[i] + 4, left[i] : left[i] + 4])


# ----------------------------------------------------------------------------- resume


def test_sigkill_then_resume_gives_bit_identical_weights(cache_dir, tmp_path):
    """Kill a CLI training run with SIGKILL after its first checkpoint, resume it, and compare
    with an uninterrupted run: model, EMA and optimiser states must be exactly equal."""
    steps = 24
    cfg = _cfg(cache_dir, steps=steps, ckpt_every=4, keep_last=0, eval_every=12)
    toml = _write_toml(tmp_path / "run.toml", cfg)
    full, killed = tmp_path / "full", tmp_path / "killed"

    proc = subprocess.Popen(
        [sys.executable, "-m", "drdd_edu.train_cli", "train", "--config", str(toml)]
        + ["--out", str(killed), "--no-progress"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    try:
        while latest_checkpoint(killed / "checkpoints") is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = [s for s, _ in list_checkpoints(killed / "checkpoints")]
    assert done and max(done) < steps, done  # killed mid-run

    res = _cli("train", "--config", str(toml), "--out", str(killed), "--resume", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert f"resumed at step {max(done)}" in res.stdout
    ref = _cli("train", "--config", str(toml), "--out", str(full), "--no-progress")
    assert ref.returncode == 0, ref.stderr

    final = f"checkpoints/ckpt_{steps:08d}.pt"
    _assert_equal_states(_states(full / final), _states(killed / final))


def test_in_process_resume_matches_and_checks_config(cache_dir, tmp_path):
    a = Trainer(_cfg(cache_dir, tmp_path / "a", steps=4))
    a.run()
    b1 = Trainer(_cfg(cache_dir, tmp_path / "b", steps=2))
    b1.run()
    b2 = Trainer(_cfg(cache_dir, tmp_path / "b", steps=4), resume=True)  # more steps: allowed
    assert b2.step == 2
    b2.run()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b2.model.state_dict()[k])
    with pytest.raises(CheckpointError, match="config mismatch.*lr"):
        Trainer(_cfg(cache_dir, tmp_path / "b", steps=6, lr=5e-3), resume=True)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(_cfg(cache_dir, tmp_path / "b", steps=6))  # would mix two runs


def test_resume_on_another_device_warns_and_continues(cache_dir, tmp_path):
    """A run written on a GPU (simulated: its checkpoint's device fields rewritten to CUDA) is
    resumed on the CPU: same weights, optimiser state and step, a ResumeDeviceWarning, and the
    run goes on; resuming on the device that wrote it is silent."""
    out = tmp_path / "run"
    Trainer(_cfg(cache_dir, out, steps=2)).run()
    path = latest_checkpoint(out / "checkpoints")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same device: no warning at all
        Trainer(_cfg(cache_dir, out, steps=3), resume=True)
    ck = load_checkpoint(path)
    assert ck["extra"]["device_type"] == "cpu"
    save_checkpoint(
        path,
        model=ck["model"],
        ema=ck["ema"],
        optimizer=ck["optimizer"],
        step=ck["step"],
        config={**ck["config_dict"], "device": "cuda"},
        rng={**ck["rng"], "cuda": []},
        extra={**ck["extra"], "device_type": "cuda"},
    )
    with pytest.warns(ResumeDeviceWarning, match="written on cuda.*on cpu.*bit-identical"):
        resumed = Trainer(_cfg(cache_dir, out, steps=3, device="cpu"), resume=True)
    assert resumed.step == 2
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, ck["model"][k])
    resumed.run()
    assert latest_checkpoint(out / "checkpoints").name == "ckpt_00000003.pt"


def test_a_diverged_run_stops_with_a_clear_error_and_keeps_its_checkpoint(cache_dir, tmp_path):
    """A non-finite loss stops training at once (FloatingPointError naming the step and what to
    try), before anything is checkpointed: the last good checkpoint stays the latest."""
    out = tmp_path / "run"
    Trainer(_cfg(cache_dir, out, steps=2)).run()
    good = latest_checkpoint(out / "checkpoints")
    tr = Trainer(_cfg(cache_dir, out, steps=4), resume=True)
    with torch.no_grad():  # weights blown up by an earlier step, as a diverging run's are
        next(tr.model.parameters()).fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="loss is nan at step 2.*lower lr"):
        tr.run()
    assert latest_checkpoint(out / "checkpoints") == good
    assert load_checkpoint(good)["step"] == 2


def test_corrupt_latest_checkpoint_on_resume_raises(cache_dir, tmp_path):
    out = tmp_path / "run"
    Trainer(_cfg(cache_dir, out, steps=4, ckpt_every=2)).run()
    latest = latest_checkpoint(out / "checkpoints")
    assert latest.name == "ckpt_00000004.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 3])  # torn copy
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        Trainer(_cfg(cache_dir, out, steps=6), resume=True)
    assert str(latest) in str(info.value)
    latest.write_bytes(b"garbage" * 100)
    res = _cli("train", "--config", str(_write_toml(tmp_path / "c.toml", _cfg(cache_dir, out))))
    assert (
        res.returncode == 2 and "already holds checkpoints" in res.stderr
    )  # without --resume an existing run is refused, not overwritten
    res = _cli(
        "train", "--config", str(tmp_path / "c.toml"), "--out", str(out), "--resume", "--steps", "6"
    )
    assert res.returncode == 2 and str(latest) in res.stderr
    assert "truncated or corrupt" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert latest_checkpoint(out / "checkpoints") == latest  # nothing restarted from scratch


# ----------------------------------------------------------------------------- DDP


@pytest.mark.parametrize(
    "changes",
    [{}, {"objective": "auto_res_noise", "schedule": "ddim"}],
    ids=["pred_res_noise", "aosa"],
)
def test_ddp_two_processes_match_one_process(cache_dir, tmp_path, changes):
    """torchrun with 2 gloo ranks on CPU (global batch 4 = 2 × 2) ends where one process with
    batch 4 ends, up to the summation order of the gradient all-reduce.

    The float32 gradients of the two runs agree to ~5e-6 relative to their largest entry,
    but Adam's update g/(|g| + ε) turns the absolute error of entries with |g| ≲ ε into an
    error of up to ~0.1·lr; a small lr keeps the gap below 1e-6 while wrong sharding (other
    samples or noise) would move parameters by ~lr per step. The per-step losses (forward
    values, all-reduced over the ranks) are compared directly.

    AOSA's λ lives outside DDP and has its gradient averaged by hand: Adam's normalised step
    would hide a missing or unscaled average in λ itself, so λ's first moment (the running
    mean of its gradients L_res − L_ε) is compared as well.
    """
    lr = 5e-6  # expected gap ≈ 3.5e-7
    cfg = _cfg(cache_dir, steps=3, batch_size=4, lr=lr, log_every=1, **changes)
    toml = _write_toml(tmp_path / "ddp.toml", cfg)
    out = tmp_path / "ddp"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "drdd_edu.train_cli", "train", "--config", str(toml), "--out", str(out)]
        + ["--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ck = torch.load(out / "checkpoints" / "ckpt_00000003.pt", weights_only=True)
    assert ck["extra"]["world_size"] == 2
    single = Trainer(cfg.replace(out_dir=""))
    init = {k: v.clone() for k, v in single.model.state_dict().items()}
    losses = [state["loss"] for state in single.steps()]
    logged = [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(losses, rel=1e-6, abs=0)
    moved = max((v - init[k]).abs().max().item() for k, v in single.model.state_dict().items())
    assert moved > 2 * lr  # three Adam steps of size ~lr: the check below is not vacuous
    for part, module in (("model", single.model), ("ema", single.ema)):
        for k, v in module.state_dict().items():
            torch.testing.assert_close(ck[part][k], v, rtol=0, atol=1e-6, msg=f"{part}.{k}")
    if single.aosa_lambda is not None:
        torch.testing.assert_close(ck["extra"]["aosa_lambda"], single.aosa_lambda.detach())
        lam_state = single.optimizer.state[single.aosa_lambda]
        lam_index = len(list(single.model.parameters()))  # λ's group follows the network's
        ddp_avg = ck["optimizer"]["state"][lam_index]["exp_avg"]
        # a missing all-reduce (rank 0's half batch) or a sum without the division differs
        # by far more than the 1e-4 relative summation-order tolerance
        assert lam_state["exp_avg"].abs() > 1e-4
        torch.testing.assert_close(ddp_avg, lam_state["exp_avg"], rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------- CLI


def test_bench_cli(capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert (
        main(
            ["bench", "--preset", "tiny", "--size", "32", "--batch", "4", "--steps", "2"]
            + ["--device", "cpu", "--json", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "images/s" in text and "TFLOP/s" in text
    result = json.loads(out.read_text())
    assert result["images_per_s"] > 0 and result["tflops"] > 0 and result["peak_memory_mb"] > 0
    assert result["sampling_steps"] == 5 and result["sample_ms"] > 0 and "5-step sampling" in text


def test_bench_sampling_options():
    from drdd_edu.train_cli import bench

    result = bench(
        preset="tiny", size=16, batch=2, steps=1, warmup=0, device="cpu", sampling_steps=0
    )
    assert result["sample_ms"] is None
    result = bench(
        preset="tiny",
        size=16,
        batch=2,
        steps=1,
        warmup=0,
        device="cpu",
        objective="pred_res",
        sampling_steps=2,
        sample_repeats=1,
    )
    assert result["sampling_steps"] == 2 and result["sample_ms"] > 0
    with pytest.raises(ValueError, match="sampling_steps"):
        bench(preset="tiny", size=16, batch=2, steps=1, device="cpu", sampling_steps=-1)


def test_bench_cli_errors_are_one_line(capsys):
    assert main(["bench", "--preset", "huge", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'huge'" in err and "Traceback" not in err
    assert main(["bench", "--preset", "tiny", "--compile", "--compile-mode", "fastest"]) == 2
    assert "unknown compile_mode 'fastest'" in capsys.readouterr().err


@pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
    reason="torch.compile on CPU (inductor) needs a C++ compiler",
)
def test_compiled_training_and_sampling_match_eager(cache_dir, tmp_path):
    """``compile = true`` (the full-gpu config's setting) run on CPU through inductor: the same
    losses and weights as eager up to float rounding, checkpoints with the raw network's keys
    (no ``_orig_mod.`` prefix, loadable by an eager model), and a compiled EMA network that
    samples like the eager one. About 2 minutes of compilation on 2 cores."""
    from drdd_edu.samplers import sample
    from drdd_edu.train_cli import sampling_model

    eager = Trainer(_cfg(cache_dir, steps=2))
    eager_losses = [state["loss"] for state in eager.steps()]
    out = tmp_path / "compiled"
    compiled = Trainer(_cfg(cache_dir, out, steps=2, compile=True))
    assert compiled.net is not compiled.model  # the training network is the compiled wrapper
    losses = [state["loss"] for state in compiled.steps()]
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for k, v in eager.model.state_dict().items():
        # Adam turns float rounding in near-zero gradients into up to ~0.1·lr (lr = 1e-3)
        torch.testing.assert_close(compiled.model.state_dict()[k], v, rtol=0, atol=2e-4)
    ck = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    assert ck["model"].keys() == eager.model.state_dict().keys()
    reloaded, _, _ = model_from_checkpoint(latest_checkpoint(out / "checkpoints"))
    assert sampling_model(eager) is eager.ema  # compile = false: the EMA model itself
    net = sampling_model(compiled)
    assert net is not compiled.ema and net.mode == compiled.ema.mode
    x_in = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    schedule = compiled.schedule
    with torch.no_grad():
        runs = [
            sample(m, x_in, schedule, 2, mode=m.mode, generator=torch.Generator().manual_seed(0))
            for m in (reloaded, net)
        ]
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-4, atol=1e-4)
    assert (runs[0] - x_in).abs().max() > 1e-3  # sampling changed the input: not vacuous


def test_sample_and_evaluate_cli(cache_dir, tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(_cfg(cache_dir, out, steps=2)).run()
    path = latest_checkpoint(out / "checkpoints")
    model, cfg, _ = model_from_checkpoint(path)
    assert cfg.steps == 2 and not model.training
    png = tmp_path / "s.png"
    assert (
        main(
            ["sample", "--checkpoint", str(path), "--steps", "2", "--n", "3"]
            + ["--out", str(png), "--device", "cpu", "--cache-dir", str(cache_dir)]
        )
        == 0
    )
    assert png.stat().st_size > 0
    js = tmp_path / "e.json"
    assert (
        main(
            ["evaluate", "--checkpoint", str(path), "--n", "4", "--steps", "2"]
            + ["--device", "cpu", "--json", str(js), "--cache-dir", str(cache_dir)]
        )
        == 0
    )
    assert "PSNR" in capsys.readouterr().out
    assert set(json.loads(js.read_text())) >= {"psnr", "ssim", "step"}


def test_evaluate_json_reports_per_task_scores(cache_dir, tmp_path, capsys):
    """``evaluate --json`` holds ``tasks`` {name: psnr, ssim, psnr_in, ssim_in, n} beside the
    averages; each average is the mean over images, so the n-weighted mean of the tasks'."""
    from drdd_edu.degradations import TASKS
    from drdd_edu.metrics import psnr, ssim
    from drdd_edu.train import eval_task_names, restore_test_images
    from drdd_edu.train_cli import _test_source

    out = tmp_path / "run"
    Trainer(_cfg(cache_dir, out, steps=2)).run()
    path = latest_checkpoint(out / "checkpoints")
    js = tmp_path / "e.json"
    n = 12
    args = ["evaluate", "--checkpoint", str(path), "--n", str(n), "--steps", "2"]
    assert main([*args, "--device", "cpu", "--json", str(js), "--cache-dir", str(cache_dir)]) == 0
    printed = capsys.readouterr().out
    got = json.loads(js.read_text())
    keys = {"psnr", "ssim", "psnr_in", "ssim_in"}
    assert set(got) >= keys | {"tasks", "step"}
    tasks = got["tasks"]
    assert tasks and set(tasks) <= set(TASKS) and len(tasks) >= 2  # spread over the split
    assert list(tasks) == [t for t in TASKS if t in tasks]  # in the data set's task order
    for name, m in tasks.items():
        assert set(m) == keys | {"n"} and isinstance(m["n"], int) and m["n"] >= 1
        assert name in printed and all(math.isfinite(m[k]) for k in keys)
    assert sum(m["n"] for m in tasks.values()) == n
    for k in keys:  # the average over images = the n-weighted mean of the per-task means
        weighted = sum(m[k] * m["n"] for m in tasks.values()) / n
        assert math.isclose(got[k], weighted, rel_tol=1e-5, abs_tol=1e-6), (k, got[k], weighted)
    # recomputed independently, image by image, from the same restoration
    model, cfg, _ = model_from_checkpoint(path)
    test = _test_source(cfg, cache_dir)
    clean, start, restored = restore_test_images(model, cfg, test, n, 2, "cpu")
    names = eval_task_names(test, n)
    assert names is not None and len(names) == n
    per_image = {
        "psnr": psnr(restored, clean),
        "ssim": ssim(restored, clean),
        "psnr_in": psnr(start, clean),
        "ssim_in": ssim(start, clean),
    }
    for k, v in per_image.items():
        assert math.isclose(got[k], float(v.mean()), rel_tol=1e-5, abs_tol=1e-6), k
        for name, m in tasks.items():
            own = [float(x) for x, t in zip(v, names, strict=True) if t == name]
            assert len(own) == m["n"]
            assert math.isclose(m[k], sum(own) / len(own), rel_tol=1e-5, abs_tol=1e-6), (name, k)
    # the input scores differ between tasks (the ids are not all the same task)
    assert len({round(m["psnr_in"], 3) for m in tasks.values()}) >= 2


def test_drdd_two_stage_evaluate(cache_dir, tmp_path, capsys):
    res_dir, noise_dir = tmp_path / "res", tmp_path / "noise"
    Trainer(_cfg(cache_dir, res_dir, steps=1, stage="drdd_residual", objective="pred_res")).run()
    Trainer(_cfg(cache_dir, noise_dir, steps=1, stage="drdd_noise", objective="pred_noise")).run()
    assert (
        main(
            ["evaluate", "--checkpoint", str(latest_checkpoint(res_dir / "checkpoints"))]
            + ["--noise-checkpoint", str(latest_checkpoint(noise_dir / "checkpoints"))]
            + ["--n", "2", "--steps", "2", "--device", "cpu", "--cache-dir", str(cache_dir)]
        )
        == 0
    )
    assert "drdd_residual" in capsys.readouterr().out
    res_ck, noise_ck = (str(latest_checkpoint(d / "checkpoints")) for d in (res_dir, noise_dir))
    for residual, noise, message in (
        (noise_ck, noise_ck, "needs a drdd_residual --checkpoint.*drdd_noise checkpoint"),
        (res_ck, res_ck, "is a drdd_residual checkpoint, not a drdd_noise one"),
    ):  # swapped or repeated files: one clear line, exit status 2
        args = ["evaluate", "--checkpoint", residual, "--noise-checkpoint", noise]
        assert main([*args, "--n", "2", "--device", "cpu", "--cache-dir", str(cache_dir)]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, err


def test_add_commands_and_dispatch():
    import argparse

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--config", "tiny-cpu", "--resume", "--steps", "5"])
    assert args.resume and args.steps == 5
    assert dispatch(argparse.Namespace(command="info")) is None  # not ours: the lead's


def test_evaluation_images_are_spread_over_the_test_split():
    # the test split is ordered by source photo: evaluation must not take only its first n pairs
    from drdd_edu.train import TrainConfig
    from drdd_edu.train.batches import _Source
    from drdd_edu.train.evaluation import _test_batches

    N, S = 10, 8
    clean = torch.arange(N, dtype=torch.uint8).view(N, 1, 1, 1).expand(N, 3, S, S).contiguous()
    src = _Source(clean, clean.clone())
    cfg = TrainConfig(image_size=S, batch_size=3)
    picked = torch.cat([c for c, _ in _test_batches(src, cfg, 4, torch.device("cpu"))])
    assert [round(float(v) * 255) for v in picked[:, 0, 0, 0]] == [0, 3, 6, 9]
    every = torch.cat([c for c, _ in _test_batches(src, cfg, 25, torch.device("cpu"))])
    assert [round(float(v) * 255) for v in every[:, 0, 0, 0]] == list(range(N))


def test_evaluation_refuses_float_images():
    # a PairedPatches' .clean is float in [0, 1]; read as 0–255 it would score silently wrong
    from drdd_edu.train import TrainConfig
    from drdd_edu.train.batches import _Source
    from drdd_edu.train.evaluation import _test_batches

    clean = torch.rand(4, 3, 8, 8)
    cfg = TrainConfig(image_size=8, batch_size=2)
    with pytest.raises(TypeError, match="'clean' images must be uint8"):
        _test_batches(_Source(clean, clean.clone()), cfg, 2, torch.device("cpu"))
