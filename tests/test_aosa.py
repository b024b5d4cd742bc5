"""AOSA (RDDM §3.3): λ's gradient, its clamp, the selection rule, and the training-data options
it needs (generation with I_in = 0, per-task paired data), checkpoints of λ and exact resume."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from small_training import small_config, small_data

from drdd_edu.aosa import AOSASelection, select_objective, train_aosa
from drdd_edu.checkpoint import CheckpointError
from drdd_edu.degradations import TASKS
from drdd_edu.diffusion import q_sample
from drdd_edu.train import TrainConfig, Trainer, load_config, model_from_checkpoint

# the trainer tests' small setup, as one AOSA network on the schedule where SM-N is valid
AOSA = dict(name="a", objective="auto_res_noise", schedule="ddim")


def _cfg(cache_dir: Path, out: Path | str = "", **kw) -> TrainConfig:
    return small_config(cache_dir, out, **{**AOSA, **kw})


# ----------------------------------------------------------------------------- λ and the loss


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_lambda_gradient_is_the_difference_of_the_two_losses(cache_dir, loss):
    tr = Trainer(_cfg(cache_dir, loss=loss))
    lam = tr.aosa_lambda
    # float-exact: literal (the initial value)
    assert isinstance(lam, torch.nn.Parameter) and float(lam.detach()) == 0.5
    with torch.no_grad():
        lam.fill_(0.3)  # away from 0.5, so a wrong weighting cannot pass by symmetry
    b = tr.batch(0)
    terms = tr.loss_terms(b)
    # by hand: one output o, read as I_res (R0) and as ε
    crit = F.l1_loss if loss == "l1" else F.mse_loss
    x_t = q_sample(b["x0"], b["x_in"], b["t"], tr.schedule, b["noise"])
    with torch.no_grad():
        o = tr.model(x_t, b["t"], b["x_in"])
    l_res = float(crit(o, b["x_in"] - b["x0"]))
    l_eps = float(crit(o, b["noise"]))
    assert float(terms["loss_res"].detach()) == pytest.approx(l_res, rel=1e-5)
    assert float(terms["loss_noise"].detach()) == pytest.approx(l_eps, rel=1e-5)
    assert float(terms["loss"].detach()) == pytest.approx(0.3 * l_res + 0.7 * l_eps, rel=1e-5)
    terms["loss"].backward()
    assert float(lam.grad) == pytest.approx(l_res - l_eps, rel=1e-5, abs=1e-7)
    assert abs(l_res - l_eps) > 1e-4  # the check above is not 0 == 0
    # the network's gradient is that of λ·L_res + (1 − λ)·L_ε, not of either alone
    g_mix = [p.grad.clone() for p in tr.model.parameters()]
    tr.model.zero_grad()
    crit(tr.model(x_t, b["t"], b["x_in"]), b["noise"]).backward()
    assert not all(
        torch.allclose(a, p.grad) for a, p in zip(g_mix, tr.model.parameters(), strict=True)
    )


def _force(monkeypatch, easy: str) -> None:
    """Make one reading trivially easy: ε = 0 (``"noise"``) or I_res = 0 (``"res"``)."""
    original = Trainer.batch

    def batch(self, step):
        b = original(self, step)
        if easy == "noise":
            b["noise"] = torch.zeros_like(b["noise"])
        else:
            b["x_in"] = b["x0"].clone()
        return b

    monkeypatch.setattr(Trainer, "batch", batch)


@pytest.mark.parametrize("easy, bound", [("res", 1.0), ("noise", 0.0)])
def test_lambda_is_clamped_to_the_unit_interval(cache_dir, monkeypatch, easy, bound):
    _force(monkeypatch, easy)
    tr = Trainer(_cfg(cache_dir, dataset="synthetic", lr=0.2, steps=8))
    lams = [state["lambda"] for state in tr.steps()]
    assert all(0.0 <= v <= 1.0 for v in lams)
    assert lams[-1] == bound  # pushed into the bound by the clamp, not past it
    assert float(tr.aosa_lambda.detach()) == bound  # float-exact: clamped


@pytest.mark.parametrize("easy, choice", [("res", "pred_res"), ("noise", "pred_noise")])
def test_selection_picks_the_easier_objective_at_the_threshold(
    cache_dir, monkeypatch, easy, choice
):
    _force(monkeypatch, easy)
    cfg = _cfg(cache_dir, dataset="synthetic", lr=1e-2)
    sel = select_objective(cfg, max_steps=60, threshold=0.05, progress=False)
    assert isinstance(sel, AOSASelection)
    assert sel.choice == choice and sel.decided
    assert abs(sel.lambda_final - 0.5) >= 0.05
    # it stopped at the first step past the threshold, not later
    steps = [s for s, _ in sel.lambda_history]
    assert steps == list(range(1, sel.decided_at_step + 1))
    assert all(abs(v - 0.5) < 0.05 for _, v in sel.lambda_history[:-1])
    assert sel.lambda_history[-1][1] == sel.lambda_final
    assert sel.decided_at_step > 1  # Adam moves λ by about lr per step: 0.05 needs several


def test_undecided_selection_reports_max_steps(cache_dir, monkeypatch):
    _force(monkeypatch, "res")
    sel = select_objective(
        _cfg(cache_dir, dataset="synthetic", lr=1e-4), max_steps=3, threshold=0.5, progress=False
    )
    assert not sel.decided and sel.decided_at_step == 3 and len(sel.lambda_history) == 3
    assert sel.choice == ("pred_res" if sel.lambda_final > 0.5 else "pred_noise")
    assert json.loads(json.dumps(sel.to_dict()))["decided_at_step"] == 3


def test_train_aosa_trains_a_fresh_network_with_the_choice(cache_dir, monkeypatch, tmp_path):
    _force(monkeypatch, "noise")
    cfg = _cfg(cache_dir, tmp_path / "run", dataset="synthetic", lr=1e-2, steps=2)
    sel, tr = train_aosa(cfg, max_select_steps=40, threshold=0.02, progress=False)
    assert sel.choice == "pred_noise"
    assert tr.config.objective == "pred_noise" and tr.aosa_lambda is None and tr.step == 2
    assert json.loads((tmp_path / "run" / "aosa.json").read_text())["choice"] == "pred_noise"
    # fresh weights: the same seed gives the selection network's initial weights
    fresh = Trainer(cfg.replace(objective="pred_noise", out_dir=""))
    sel_net = Trainer(cfg.replace(out_dir=""))
    for a, b in zip(fresh.model.parameters(), sel_net.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_selection_needs_ddim_schedule_and_rddm_stage(cache_dir):
    with pytest.raises(ValueError, match="schedule = 'ddim'"):
        select_objective(_cfg(cache_dir, objective="pred_res", schedule="rddm"), max_steps=1)
    with pytest.raises(ValueError, match="stage = 'rddm'"):
        select_objective(
            _cfg(cache_dir, objective="pred_res", stage="drdd_residual", schedule="rddm"),
            max_steps=1,
        )
    with pytest.raises(ValueError, match="max_steps"):
        select_objective(_cfg(cache_dir), max_steps=0)
    with pytest.raises(ValueError, match="threshold"):
        select_objective(_cfg(cache_dir), threshold=0.0)


# ----------------------------------------------------------------------------- data options


def test_generation_batches_have_zero_input_and_target_images(cache_dir):
    tr = Trainer(_cfg(cache_dir, generation=True, hflip=False, loss="l2", batch_size=6))
    targets = small_data(cache_dir).target_dataset().clean * 2 - 1  # [-1, 1]
    assert tr.train_src.degraded is None and len(tr.train_src) == len(targets)
    for step in (0, 1):
        b = tr.batch(step)
        assert torch.equal(b["x_in"], torch.zeros_like(b["x0"]))
        # every x0 is one of the unpaired target images (so I_res = −I_0)
        d = (b["x0"][:, None] - targets[None]).abs().flatten(2).amax(-1)
        assert bool((d.min(1).values < 1e-6).all())
    assert math.isfinite(float(tr.loss_on(tr.batch(0)).detach()))
    with pytest.raises(ValueError, match="no paired test targets"):
        tr.evaluate()


def test_tasks_restrict_training_and_test_patches(cache_dir):
    data = small_data(cache_dir)
    pick = ("rain", "haze")
    ids = [TASKS.index(t) for t in pick]
    tr = Trainer(_cfg(cache_dir, tasks=pick))
    for split, src in (("train", tr.train_src), ("test", tr.test_src)):
        full = data.paired_subset(split)
        keep = torch.isin(full.task, torch.tensor(ids))
        assert 0 < int(keep.sum()) < len(full)
        assert torch.equal(src.clean.cpu(), full.clean_u8[keep])
        assert torch.equal(src.degraded.cpu(), full.degraded_u8[keep])
    # with a data fraction: the fraction's patches of those tasks only
    sub = data.paired_subset("train", 0.5)
    tr = Trainer(_cfg(cache_dir, tasks=("noise",), data_fraction=0.5))
    assert torch.equal(tr.train_src.clean.cpu(), sub.clean_u8[sub.task == TASKS.index("noise")])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"tasks": ("snow",)}, "unknown tasks"),
        ({"tasks": ("rain", "rain")}, "repeat"),
        ({"tasks": "rain"}, "list of task names"),
        ({"tasks": ("rain",), "dataset": "synthetic"}, "dataset = 'allinone5'"),
        ({"tasks": ("rain",), "generation": True}, "unpaired"),
        ({"stage": "drdd_residual", "schedule": "rddm"}, "AOSA.*stage = 'rddm'"),
        ({"stage": "drdd_noise", "schedule": "rddm"}, "AOSA.*stage = 'rddm'"),
        ({"schedule": "rddm"}, "schedule = 'ddim'.*SM-Res and SM-N"),
        ({"objective": "pred_noise", "schedule": "rddm"}, "schedule = 'ddim'"),
        ({"objective": "pred_res", "stage": "drdd_residual", "schedule": "rddm",
          "generation": True}, "generation.*stage = 'rddm'"),
        ({"objective": "pred_noise", "stage": "drdd_noise", "schedule": "rddm",
          "generation": True}, "generation.*stage = 'rddm'"),
        ({"generation": True, "eval_every": 5}, "eval_every = 0"),
        ({"generation": 1}, "generation must be true or false"),
    ],
)  # fmt: skip
def test_bad_aosa_configs(cache_dir, changes, match):
    with pytest.raises(ValueError, match=match):
        _cfg(cache_dir, **changes)


def test_new_keys_round_trip_through_dict_and_toml(cache_dir, tmp_path):
    cfg = _cfg(cache_dir, tasks=("low_light", "blur"), loss="l2")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    gen = _cfg(cache_dir, generation=True, objective="pred_noise")
    toml = tmp_path / "gen.toml"
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in gen.to_dict().items()))
    assert TrainConfig.from_toml(toml) == gen
    bundled = load_config("aosa-tiny")
    assert (bundled.objective, bundled.schedule, bundled.model_objective) == (
        "auto_res_noise",
        "ddim",
        "pred_res",
    )


# ----------------------------------------------------------------------------- checkpoints


def test_lambda_checkpoint_round_trip_and_exact_resume(cache_dir, tmp_path):
    a = Trainer(_cfg(cache_dir, tmp_path / "a", steps=4, lr=5e-3, log_every=1))
    a.run()
    b1 = Trainer(_cfg(cache_dir, tmp_path / "b", steps=2, lr=5e-3, log_every=1))
    b1.run()
    lam_2 = b1.aosa_lambda.detach().clone()
    # float-exact: literal (a value passed through unchanged)
    assert float(lam_2) != 0.5  # it moved, so restoring it is a real check
    b2 = Trainer(_cfg(cache_dir, tmp_path / "b", steps=4, lr=5e-3, log_every=1), resume=True)
    assert b2.step == 2 and torch.equal(b2.aosa_lambda.detach(), lam_2)
    b2.run()
    assert torch.equal(a.aosa_lambda.detach(), b2.aosa_lambda.detach())
    sd_b = b2.model.state_dict()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, sd_b[k]), k
    sa, sb = a.optimizer.state_dict()["state"], b2.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k, v in sa[i].items():
            assert torch.equal(v, sb[i][k]), (i, k)
    # λ is logged every step
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(0 <= r["lambda"] <= 1 and "loss_res" in r and "loss_noise" in r for r in log)
    assert log[-1]["lambda"] == float(a.aosa_lambda.detach())  # float-exact: literal
    # the checkpoint rebuilds the one-output network and is sampled as SM-Res
    model, cfg, ck = model_from_checkpoint(tmp_path / "a" / "checkpoints" / "ckpt_00000004.pt")
    assert cfg.objective == "auto_res_noise" and model.mode == "res"
    assert torch.equal(ck["extra"]["aosa_lambda"], a.aosa_lambda.detach())


def test_checkpoints_from_before_the_new_keys_still_resume(cache_dir, tmp_path):
    """A checkpoint whose stored config lacks keys added later (``tasks``, ``generation``,
    ``compile_mode``, ``aosa_lambda_lr_scale``) resumes with their defaults, and only with them;
    the experiments' run reuse compares the same way."""
    out = tmp_path / "old"
    cfg = _cfg(cache_dir, out, objective="pred_res", schedule="rddm", steps=2)
    Trainer(cfg).run()
    path = out / "checkpoints" / "ckpt_00000002.pt"
    ck = torch.load(path, weights_only=True)
    stored = json.loads(ck["config"])
    del stored["tasks"], stored["generation"], stored["aosa_lambda_lr_scale"]
    del stored["compile_mode"]
    ck["config"] = json.dumps(stored, sort_keys=True)
    torch.save(ck, path)
    assert Trainer(cfg.replace(steps=3), resume=True).step == 2
    with pytest.raises(CheckpointError, match="config mismatch.*tasks"):
        Trainer(cfg.replace(steps=3, tasks=("rain",)), resume=True)
    with pytest.raises(CheckpointError, match="config mismatch.*aosa_lambda_lr_scale"):
        Trainer(cfg.replace(steps=3, aosa_lambda_lr_scale=0.5), resume=True)
    from drdd_edu.experiments.runs import RunConfigMismatch, _stored_config_check

    assert _stored_config_check(out, cfg) == (2, path)
    with pytest.raises(RunConfigMismatch, match="tasks"):
        _stored_config_check(out, cfg.replace(tasks=("rain",)))


@pytest.mark.parametrize("scale", [0.1, 0.01])
def test_lambda_learning_rate_scale(cache_dir, scale):
    """λ's own learning rate lr × aosa_lambda_lr_scale: Adam's first steps move a parameter by
    ≈ its lr each (g/|g|), so after 3 steps |λ − ½| shrinks by the scale; the network's steps
    keep the full lr."""
    moves = {}
    for s in (1.0, scale):
        tr = Trainer(_cfg(cache_dir, steps=3, lr=1e-3, aosa_lambda_lr_scale=s))
        states = list(tr.steps())
        moves[s] = abs(states[-1]["lambda"] - 0.5)
        assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
        assert tr.optimizer.param_groups[-1]["lr"] == pytest.approx(1e-3 * s)
    assert moves[1.0] == pytest.approx(3e-3, rel=0.05)  # three steps of ≈ lr
    assert moves[scale] / moves[1.0] == pytest.approx(scale, rel=0.05)
    with pytest.raises(ValueError, match="aosa_lambda_lr_scale"):
        _cfg(cache_dir, aosa_lambda_lr_scale=0.0)
