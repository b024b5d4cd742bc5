"""The generator-style :class:`Trainer` (one network, one stage) and its EMA update."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import checkpoint as ckpt_io
from ..diffusion import (
    q_sample,
    q_sample_noise_stage,
    q_sample_residual_stage,
    to_model_range,
)
from ..nn import ResidualDenoiser, build_model
from ..schedules import Schedule
from .batches import (
    _STREAM_STEP,
    _crop,
    _load_sources,
    batch_indices,
    rotate_quarter_turns,
    step_seed,
)
from .config import RESUME_MUTABLE_KEYS, ResumeDeviceWarning, TrainConfig, with_config_defaults
from .distributed import init_distributed, resolve_amp
from .evaluation import _weights_mismatch, evaluate_model

# ----------------------------------------------------------------------------- EMA


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ (buffers copied)."""
    e_params = list(ema.parameters())
    m_params = [p.detach() for p in model.parameters()]
    if e_params:
        torch._foreach_lerp_(e_params, m_params, 1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(mb)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Train one network for one stage; see the module docstring.

    Args:
        config: the :class:`TrainConfig`.
        resume: continue from the latest checkpoint in ``<out_dir>/checkpoints`` if there is one
            (a config that differs in a key outside :data:`RESUME_MUTABLE_KEYS`, or an unreadable
            latest checkpoint, raises :class:`~drdd_edu.checkpoint.CheckpointError`). Without
            ``resume`` an output folder that already holds checkpoints is refused.

    The output folder is locked (:class:`~drdd_edu.checkpoint.RunLock`, rank 0) from
    construction until :meth:`close` (which :meth:`run` calls): another process constructing a
    Trainer on it gets :class:`~drdd_edu.checkpoint.RunLockedError` naming this one's pid.

    Attributes:
        model: the raw network (not wrapped in DDP / compiled); ``ema``: its EMA copy.
        step: optimisation steps done. ``schedule``, ``device``, ``dist``, ``optimizer``.

    Use ``for state in trainer.steps(): ...`` (states: ``step``, ``loss``, ``lr``,
    ``grad_norm``, plus ``eval`` and ``checkpoint`` when those happen) or :meth:`run`.
    """

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        config.validate()
        self.config = cfg = config
        self.dist, self.device = init_distributed(cfg.device)
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                f"world size {self.dist.world_size}"
            )
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.out_dir = cfg.output_dir
        self._run_lock: ckpt_io.RunLock | None = None
        self._run_lock = self._lock_run_folder()
        try:
            self._setup(resume)
        except BaseException:
            self._release_run_lock()
            raise

    def _setup(self, resume: bool) -> None:
        """The rest of ``__init__``, run while holding the run folder's lock."""
        cfg = self.config
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.schedule: Schedule = cfg.make_schedule()
        self.ckpt_dir = self.out_dir / "checkpoints" if self.out_dir else None
        self.step = 0
        self.last_eval: dict[str, float] = {}
        self.resumed_from: Path | None = None

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model: ResidualDenoiser = build_model(
            cfg.preset,
            objective=cfg.model_objective,  # type: ignore[arg-type]
            two_networks=cfg.two_networks,
            conditioned=cfg.conditioned,
            time_mode=cfg.time_mode,  # type: ignore[arg-type]
            schedule=self.schedule,
        ).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        opt_kwargs: dict[str, Any] = dict(
            lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
        if self.device.type == "cuda":
            opt_kwargs["fused"] = True
        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
        #: AOSA's learnable λ (``auto_res_noise`` only, else None): a 0-d float32 parameter in
        #: its own optimiser group without weight decay (decay would pull λ toward SM-N)
        self.aosa_lambda: nn.Parameter | None = None
        if cfg.objective == "auto_res_noise":
            self.aosa_lambda = nn.Parameter(torch.tensor(0.5, device=self.device))
            groups.append({"params": [self.aosa_lambda], "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, **opt_kwargs)

        if resume:
            self._resume()
        elif self.ckpt_dir is not None and ckpt_io.list_checkpoints(self.ckpt_dir):
            raise FileExistsError(
                f"{self.ckpt_dir} already holds checkpoints; pass resume=True (--resume) to "
                "continue that run, or choose another out_dir"
            )

        self.train_src, self.test_src = _load_sources(
            cfg, self.device, verbose=cfg.progress and self.dist.is_main
        )
        self._gen = torch.Generator(device=self.device)

        net: nn.Module = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net, mode=cfg.compile_mode)  # type: ignore[assignment]
        self.net = net
        # a resumed run with nothing left to train (step ≥ steps) leaves its files untouched
        if self.dist.is_main and self.out_dir is not None and self.step < cfg.steps:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            self._trim_log()

    # -- the run folder's lock -------------------------------------------------------
    def _lock_run_folder(self) -> ckpt_io.RunLock | None:
        """Take ``out_dir``'s :class:`~drdd_edu.checkpoint.RunLock` (rank 0 only: it alone
        writes), or raise :class:`~drdd_edu.checkpoint.RunLockedError` / ``OSError``. Under DDP
        rank 0 broadcasts its outcome, so every rank raises together instead of the others
        waiting forever in a collective for a rank 0 that has left."""
        if self.out_dir is None:
            return None
        lock, problem = None, None
        if self.dist.is_main:
            try:
                lock = ckpt_io.RunLock.acquire(self.out_dir)
            except (ckpt_io.RunLockedError, OSError) as err:
                problem = err
        if self.dist.distributed:
            import torch.distributed as dist

            box: list[str | None] = [None if problem is None else str(problem)]
            dist.broadcast_object_list(box, src=0)
            if box[0] is not None and problem is None:
                problem = ckpt_io.RunLockedError(f"rank 0 could not lock the run folder: {box[0]}")
        if problem is not None:
            self.close()  # every rank leaves the process group together
            raise problem
        return lock

    def _release_run_lock(self) -> None:
        lock, self._run_lock = getattr(self, "_run_lock", None), None
        if lock is not None:
            lock.release()

    # -- resume / checkpoints --------------------------------------------------------
    def _resume(self) -> None:
        if self.ckpt_dir is None:
            raise ValueError("resume needs an out_dir to look for checkpoints in")
        if self.dist.is_main:
            ckpt_io.remove_stale_temp_files(self.ckpt_dir)
        path = ckpt_io.latest_checkpoint(self.ckpt_dir)
        if path is None:
            return  # nothing written yet: a fresh start is the correct resume
        ck = ckpt_io.load_checkpoint(path, map_location=self.device)
        stored = with_config_defaults(ck["config_dict"])
        mutable = RESUME_MUTABLE_KEYS
        if self.config.lr_schedule != "constant":  # the schedule's shape depends on steps
            mutable = mutable - {"steps"}
        ckpt_io.check_config(stored, self.config.to_dict(), mutable, path)
        try:
            self.model.load_state_dict(ck["model"])
            self.ema.load_state_dict(ck["ema"])
            self.optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            why = _weights_mismatch(self.model, ck["model"]) or _weights_mismatch(
                self.ema, ck["ema"]
            )
            if why is None:  # the weights fit: the optimiser state does not
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                why = f"its optimiser state does not load ({type(err).__name__}: {first})"
            raise ckpt_io.CheckpointError(
                f"checkpoint {path} does not fit this model/optimizer: {why}"
            ) from err
        extra = ck.get("extra", {})
        if self.aosa_lambda is not None:
            lam = extra.get("aosa_lambda")
            if lam is None:
                raise ckpt_io.CheckpointError(f"checkpoint {path} lacks AOSA's λ (aosa_lambda)")
            with torch.no_grad():
                self.aosa_lambda.copy_(torch.as_tensor(lam))
        ckpt_io.restore_rng_state(ck["rng"])
        written_on = extra.get("device_type")
        if written_on is not None and written_on != self.device.type:
            warnings.warn(
                f"resuming {path} (written on {written_on}) on {self.device.type}: the weights, "
                "optimiser state and step carry over, but the random batches and noise now come "
                f"from the {self.device.type} generator, so the run is no longer bit-identical to "
                f"an uninterrupted run on {written_on}",
                ResumeDeviceWarning,
                stacklevel=3,
            )
        self.step = int(ck["step"])
        self.last_eval = dict(extra.get("eval", {}))
        self.resumed_from = path

    def save(self) -> Path | None:
        """Write ``<out_dir>/checkpoints/ckpt_<step>.pt`` atomically (rank 0 only) and rotate."""
        if self.ckpt_dir is None or not self.dist.is_main:
            return None
        path = ckpt_io.save_checkpoint(
            ckpt_io.checkpoint_path(self.ckpt_dir, self.step),
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            step=self.step,
            config=self.config.to_json(),
            extra=self._extra(),
        )
        ckpt_io.rotate_checkpoints(self.ckpt_dir, self.config.keep_last)
        return path

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "eval": dict(self.last_eval),
            "world_size": self.dist.world_size,
            "device_type": self.device.type,  # resume elsewhere warns (ResumeDeviceWarning)
        }
        if self.aosa_lambda is not None:  # exact: a float32 tensor, not a Python float
            extra["aosa_lambda"] = self.aosa_lambda.detach().clone().cpu()
        return extra

    # -- logging ---------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        return self.out_dir / "log.jsonl" if self.out_dir is not None else None

    def _trim_log(self) -> None:
        """On resume, drop log lines of steps after the checkpoint (they will be redone)."""
        p = self.log_path
        if p is None or not p.is_file():
            return
        keep = []
        for line in p.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except ValueError:
                continue  # a torn last line from a killed process
        p.write_text("".join(k + "\n" for k in keep))

    def _log(self, record: Mapping[str, Any]) -> None:
        p = self.log_path
        if p is not None and self.dist.is_main:
            with p.open("a") as f:
                f.write(json.dumps(dict(record)) + "\n")

    # -- one step --------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of (0-based) step ``step``: linear warm-up, then the config's
        ``lr_schedule`` (:meth:`TrainConfig.lr_at`)."""
        return self.config.lr_at(step)

    def ema_decay_at(self, step: int) -> float:
        """EMA decay after (0-based) step ``step``: min(ema_decay, (1 + k)/(10 + k)) with warm-up."""
        d = self.config.ema_decay
        return min(d, (1 + step) / (10 + step)) if self.config.ema_warmup else d

    def batch(self, step: int) -> dict[str, Tensor]:
        """This rank's slice of the global batch of ``step`` (a pure function of (seed, step)).

        Returns ``x0`` (B_local, 3, S, S) on [-1, 1], ``x_in`` (or None for the noise stage;
        zeros with ``generation``), ``t`` (B_local,) long and ``noise`` (B_local, 3, S, S); with
        ``task_weights`` also ``weight`` (B_local,) float32, each sample's task weight. With
        ``identity_fraction`` p, each sample's I_in is replaced by its I_0 with probability p.
        """
        cfg, dev = self.config, self.device
        B, S = cfg.batch_size, cfg.image_size
        g = self._gen.manual_seed(step_seed(cfg.seed, _STREAM_STEP, step))
        lo, hi = self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch
        if self.train_src is None:  # synthetic: smooth random images and a noisy input
            x0 = torch.rand((B, 3, S, S), generator=g, device=dev)[lo:hi] * 2 - 1
            x_in = (x0 + 0.2 * torch.randn((B, 3, S, S), generator=g, device=dev)[lo:hi]).clamp(
                -1, 1
            )
        else:
            src = self.train_src
            idx = batch_indices(cfg.seed, step, B, len(src))[lo:hi].to(dev)
            flips = torch.rand((B,), generator=g, device=dev)[lo:hi] < 0.5
            if cfg.rot90:  # drawn only when on, so that other runs keep their batches
                turns = torch.randint(0, 4, (B,), generator=g, device=dev)[lo:hi]
            data_s = src.clean.shape[-1]
            if data_s > S:
                offs = torch.randint(0, data_s - S + 1, (B, 2), generator=g, device=dev)[lo:hi]
            imgs = [src.clean[idx]] + ([src.degraded[idx]] if src.degraded is not None else [])
            out = []
            for im in imgs:
                x = to_model_range(im.float() / 255.0)
                if data_s > S:
                    x = _crop(x, offs[:, 0], offs[:, 1], S)
                if cfg.hflip:
                    x = torch.where(flips[:, None, None, None], x.flip(-1), x)
                if cfg.rot90:
                    x = rotate_quarter_turns(x, turns)
                out.append(x)
            x0 = out[0]
            x_in = out[1] if len(out) > 1 else None
            if cfg.identity_fraction > 0 and x_in is not None:  # "do no harm": I_in = I_0
                same = torch.rand((B,), generator=g, device=dev)[lo:hi] < cfg.identity_fraction
                x_in = torch.where(same[:, None, None, None], x0, x_in)
            if cfg.task_weights:
                weight = self._task_weight_table(src)[src.task[idx]]
        if cfg.generation:  # RDDM generation: I_in = 0, so I_res = −I_0 (R0)
            x_in = torch.zeros_like(x0)
        t = torch.randint(0, cfg.T, (B,), generator=g, device=dev)[lo:hi]
        noise = torch.randn((B, 3, S, S), generator=g, device=dev)[lo:hi]
        if cfg.channels_last:
            x0, noise = (v.contiguous(memory_format=torch.channels_last) for v in (x0, noise))
            if x_in is not None:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
        b = {"x0": x0, "x_in": x_in, "t": t, "noise": noise}
        if cfg.task_weights and self.train_src is not None:
            b["weight"] = weight
        return b

    def _task_weight_table(self, src: Any) -> Tensor:
        """``task_weights`` indexed by the source's task ids, (n_task_names,) float32."""
        from ..degradations import TASKS

        if src.task is None:
            raise RuntimeError("task_weights needs a training source with task ids")
        names = src.task_names or TASKS
        w = [float(self.config.task_weights[TASKS.index(n)]) for n in names]
        return torch.tensor(w, dtype=torch.float32, device=src.task.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def loss_on(self, b: Mapping[str, Tensor]) -> Tensor:
        """The stage's objective on one batch (module docstring); a 0-d float32 tensor."""
        return self.loss_terms(b)["loss"]

    def loss_terms(self, b: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The objective on one batch: ``{"loss": …}`` (0-d float32, differentiable), plus for
        ``auto_res_noise`` the two readings ``loss_res`` = L(o, I_res), ``loss_noise`` =
        L(o, ε) with L = λ·loss_res + (1 − λ)·loss_noise (RDDM §3.3, AOSA)."""
        cfg = self.config
        if cfg.objective != "auto_res_noise":
            return {"loss": self._objective_loss(b)}
        crit = self._criterion(b)
        x0, x_in, t, noise = b["x0"], b["x_in"], b["t"], b["noise"]
        with self._autocast():
            x_t = q_sample(x0, x_in, t, self.schedule, noise)  # (R2)
            out = self.net(x_t, t, x_in).float()  # one 3-channel output o
        loss_res = crit(out, x_in - x0)  # o read as I_res (R0): SM-Res
        loss_noise = crit(out, noise)  # o read as ε: SM-N
        lam = self.aosa_lambda
        loss = lam * loss_res + (1 - lam) * loss_noise
        return {"loss": loss, "loss_res": loss_res, "loss_noise": loss_noise}

    def _criterion(self, b: Mapping[str, Tensor]) -> Any:
        """The loss function ``crit(pred, target) → 0-d``: L1 or L2 (the config's ``loss``),
        the plain mean, or with a ``weight`` (B,) in the batch the task-weighted mean
        ``Σ_i w_i·mean(|pred_i − target_i|^p) / Σ_i w_i`` (``task_weights``)."""
        plain = F.l1_loss if self.config.loss == "l1" else F.mse_loss
        w = b.get("weight")
        if w is None:
            return plain
        w = w.float()

        def weighted(pred: Tensor, target: Tensor) -> Tensor:
            per = plain(pred, target, reduction="none").flatten(1).mean(dim=1)  # (B,)
            return (w * per).sum() / w.sum().clamp_min(1e-12)

        return weighted

    def _objective_loss(self, b: Mapping[str, Tensor]) -> Tensor:
        cfg, sch = self.config, self.schedule
        x0, x_in, t, noise = b["x0"], b["x_in"], b["t"], b["noise"]
        crit = self._criterion(b)
        with self._autocast():
            if cfg.stage == "drdd_noise":
                x_t = q_sample_noise_stage(x0, t, sch, noise)  # (D1)
                if cfg.noise_conditioned:  # drdd_cond: the denoiser also sees I_in
                    return crit(self.net(x_t, t, x_in).float(), noise)
                return crit(self.net(x_t, t).float(), noise)
            if x_in is None:
                raise RuntimeError(f"stage {cfg.stage!r} needs paired data")
            res = x_in - x0  # I_res (R0)
            if cfg.stage == "drdd_residual":
                x_t = q_sample_residual_stage(x0, x_in, t, sch, noise, cfg.noise_strength)  # (D2)
                return crit(self.net(x_t, t, x_in).float(), res)
            x_t = q_sample(x0, x_in, t, sch, noise)  # (R2)
            out = self.net(x_t, t, x_in)
        if cfg.objective == "pred_res":
            return crit(out.float(), res)
        if cfg.objective == "pred_noise":
            return crit(out.float(), noise)
        pred_res, pred_noise = out
        return crit(pred_res.float(), res) + crit(pred_noise.float(), noise)

    def train_step(self) -> dict[str, float]:
        """Do optimisation step ``self.step`` and advance it; returns loss, lr, grad_norm (and
        for ``auto_res_noise``: ``lambda`` after the step, ``loss_res``, ``loss_noise``)."""
        step = self.step
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.aosa_lambda is not None:  # λ's group (the last) may learn at its own rate
            self.optimizer.param_groups[-1]["lr"] = lr * self.config.aosa_lambda_lr_scale
        self.net.train()
        terms = self.loss_terms(self.batch(step))
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lam = self.aosa_lambda
        if lam is not None and self.dist.distributed and lam.grad is not None:
            import torch.distributed as dist  # λ is outside DDP: average its gradient here

            dist.all_reduce(lam.grad)
            lam.grad /= self.dist.world_size
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        # the network's gradient only: λ's (= L_res − L_ε) is neither clipped nor counted
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        if lam is not None:
            with torch.no_grad():
                lam.clamp_(0.0, 1.0)  # AOSA keeps λ in [0, 1]
        _ema_update(self.ema, self.model, self.ema_decay_at(step))
        loss_d = loss.detach()
        if self.dist.distributed:
            import torch.distributed as dist

            dist.all_reduce(loss_d)
            loss_d = loss_d / self.dist.world_size
        loss_v = float(loss_d)
        if not math.isfinite(loss_v):
            raise FloatingPointError(
                f"loss is {loss_v} at step {step}; lower lr, enable grad_clip or use amp='off'"
            )
        self.step = step + 1
        out = {"loss": loss_v, "lr": lr, "grad_norm": float(grad_norm)}
        if lam is not None:  # λ after this step's update, and the two readings' losses
            out["lambda"] = float(lam.detach())
            out["loss_res"] = float(terms["loss_res"].detach())
            out["loss_noise"] = float(terms["loss_noise"].detach())
        return out

    # -- the loop --------------------------------------------------------------------
    def steps(self) -> Iterator[dict[str, Any]]:
        """Train until ``config.steps``, yielding ``{step, loss, lr, grad_norm}`` after every
        step (plus ``lambda``, ``loss_res``, ``loss_noise`` for ``auto_res_noise``), with
        ``eval`` (metrics) and ``checkpoint`` (path) added when those happen."""
        cfg = self.config
        while self.step < cfg.steps:
            state: dict[str, Any] = self.train_step()
            state = {"step": self.step, **state}
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.dist.is_main:
                self.last_eval = self.evaluate()
                state["eval"] = dict(self.last_eval)
            if self.step % cfg.log_every == 0 or "eval" in state or self.step == cfg.steps:
                self._log(state)
            last = self.step == cfg.steps
            if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last:
                path = self.save()
                if path is not None:
                    state["checkpoint"] = str(path)
            yield state

    def run(self, progress: bool | None = None, leave: bool = True) -> dict[str, Any]:
        """Drive :meth:`steps` to the end with a tqdm progress bar; returns the last state.

        ``progress`` shows the bar (default ``config.progress``; rank 0 only), ``leave`` keeps
        it on screen when training ends (False for runs nested in a longer job's own bar).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        show = cfg.progress if progress is None else progress
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {cfg.name}",
            disable=not (show and self.dist.is_main),
            dynamic_ncols=True,
            leave=leave,
        )
        last: dict[str, Any] = {"step": self.step}
        try:
            for state in self.steps():
                bar.update(1)
                bar.set_postfix(loss=f"{state['loss']:.4f}", refresh=False)
                if "eval" in state:
                    bar.write(
                        f"step {state['step']}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in state["eval"].items())
                    )
                last = state
        finally:
            bar.close()
            self.close()
        return last

    def close(self) -> None:
        """Release the run folder's lock; leave the process group if this trainer joined it."""
        self._release_run_lock()
        if self.dist.initialized_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- evaluation ------------------------------------------------------------------
    def evaluate(
        self, n_images: int | None = None, sampling_steps: int | None = None
    ) -> dict[str, float]:
        """PSNR/SSIM of the EMA model on the held-out test split (see :func:`evaluate_model`)."""
        return evaluate_model(
            self.ema,
            self.config,
            self.test_src,
            n_images=n_images or self.config.eval_images,
            sampling_steps=sampling_steps or self.config.sampling_steps,
            device=self.device,
            schedule=self.schedule,
        )
