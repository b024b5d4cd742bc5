"""The shared state of one experiment run: size settings, device, run folders, the data set,
the trained networks, and a progress bar over the experiment's jobs (trainings and
evaluations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import AllInOne5, build_all_in_one5
from ..nn import ResidualDenoiser
from ..schedules import Schedule
from ..train import TrainConfig
from .evaluation import (
    Denoiser,
    Restorer,
    drdd_exact_restorer,
    drdd_restorer,
    evaluate_noise_stage_per_task,
    evaluate_per_task,
)
from .runs import RunRecord, ensure_run, load_run_model, noise_config
from .sizes import SizeSettings

__all__ = ["Context", "DRDD_VARIANTS"]

#: DRDD's variants, named in every table and figure: ``drdd`` (unconditional denoiser trained on
#: unpaired clean images — the paper's text), ``drdd_cond`` (denoiser conditioned on I_in, trained
#: on pairs — the paper's code), ``drdd_exact`` (no denoiser: the injected noise is known at
#: sampling time and subtracted exactly — Table 8's "DRDD without denoiser")
DRDD_VARIANTS: tuple[str, ...] = ("drdd", "drdd_cond", "drdd_exact")


@dataclass
class Context:
    """What an experiment module needs; see :func:`drdd_edu.experiments.run_experiment`.

    ``runs_dir`` is the size's folder (``{runs_dir}/{size}``); ``records`` collects every
    network's :class:`~drdd_edu.experiments.runs.RunRecord` and ``extra_runs`` other timed
    work (AOSA selections), both for the result's meta; ``meta_extra`` is merged into it.
    """

    name: str
    settings: SizeSettings
    seed: int
    device: str
    runs_dir: Path
    progress: bool = True
    total_jobs: int = 0
    jobs_done: int = 0
    records: list[RunRecord] = field(default_factory=list)
    extra_runs: list[dict[str, Any]] = field(default_factory=list)
    meta_extra: dict[str, Any] = field(default_factory=dict)
    _data: AllInOne5 | None = None
    _models: dict[Path, ResidualDenoiser] = field(default_factory=dict)
    _bar: Any = None
    _records_by_name: dict[str, RunRecord] = field(default_factory=dict)

    # -- progress ------------------------------------------------------------------------
    def __enter__(self) -> Context:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total_jobs,
            desc=f"{self.name} ({self.settings.name})",
            unit="job",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def tick(self, what: str) -> None:
        """Count one finished job on the progress bar."""
        self._tick(what)

    def _tick(self, what: str) -> None:
        self.jobs_done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(what, refresh=False)
            self._bar.update(1)

    # -- data, networks, evaluation ------------------------------------------------------
    def data(self) -> AllInOne5:
        """The All-in-One-5 benchmark at this size (built once, from the cache)."""
        if self._data is None:
            s = self.settings
            self._data = build_all_in_one5(
                size=s.image_size,
                seed=0,
                max_patches_per_image=s.max_patches_per_image or None,
                progress=False,
            )
        return self._data

    def ensure(self, cfg: TrainConfig) -> RunRecord:
        """Train (or reuse) ``cfg`` in ``{runs_dir}/{cfg.name}``; one progress job (the first
        time a run is asked for; later calls return the same record)."""
        if cfg.name in self._records_by_name:
            return self._records_by_name[cfg.name]
        record = ensure_run(cfg, self.runs_dir / cfg.name, progress=self.progress)
        self.records.append(record)
        self._records_by_name[cfg.name] = record
        self._tick(f"{'reused' if record.reused else 'trained'} {cfg.name}")
        return record

    def model(self, record: RunRecord) -> ResidualDenoiser:
        """The EMA network of ``record`` on the device (loaded once)."""
        if record.checkpoint not in self._models:
            self._models[record.checkpoint] = load_run_model(record, self.device)
        return self._models[record.checkpoint]

    def noise_net(
        self,
        conditioned: bool = False,
        fraction: float = 1.0,
        settings: SizeSettings | None = None,
        pool: str = "target",
    ) -> tuple[ResidualDenoiser, Schedule]:
        """A DRDD noise net (trained or reused) and its schedule: the size's shared unconditional
        one (on the unpaired ``pool``), or the I_in-conditioned one trained on ``fraction`` of
        the pairs; ``settings`` (default: the context's) are those of the networks' study."""
        s = settings or self.settings
        cfg = noise_config(s, self.seed, self.device, conditioned, fraction, pool)
        return self.model(self.ensure(cfg)), cfg.make_schedule()

    def drdd(
        self,
        residual_cfg: TrainConfig,
        noise_strength: float,
        variant: str = "drdd",
        settings: SizeSettings | None = None,
        pool: str = "target",
    ) -> Restorer:
        """DRDD's decoupled sampler at this size's step counts with ``residual_cfg``'s residual
        net, starting at noise strength σ, in one of :data:`DRDD_VARIANTS`: the shared
        unconditional noise net (``drdd``, on the unpaired ``pool``), a conditioned one trained
        on the residual net's fraction of the pairs (``drdd_cond``), or no noise net
        (``drdd_exact``); ``settings`` as in :meth:`noise_net`."""
        if variant not in DRDD_VARIANTS:
            raise ValueError(f"unknown DRDD variant {variant!r}; choose one of {DRDD_VARIANTS}")
        s = self.settings
        if variant == "drdd_exact":
            return drdd_exact_restorer(
                self.model(self.ensure(residual_cfg)),
                residual_cfg.make_schedule(),
                s.drdd_residual_sampling_steps,
                noise_strength,
            )
        cond = variant == "drdd_cond"
        noise_model, noise_sch = self.noise_net(cond, residual_cfg.data_fraction, settings, pool)
        return drdd_restorer(
            self.model(self.ensure(residual_cfg)),
            noise_model,
            residual_cfg.make_schedule(),
            noise_sch,
            s.drdd_residual_sampling_steps,
            s.drdd_noise_sampling_steps,
            noise_strength,
            noise_conditioned=cond,
        )

    def evaluate_noise_stage(
        self, denoise: Denoiser, noise_strength: float, what: str
    ) -> dict[str, dict[str, float]]:
        """:func:`evaluate_noise_stage_per_task` at this size; one progress job."""
        with torch.inference_mode():
            scores = evaluate_noise_stage_per_task(
                denoise,
                self.data(),
                self.settings.n_per_task,
                noise_strength,
                seed=self.seed,
                device=self.device,
                image_size=self.settings.image_size,
                batch_size=self.settings.eval_batch_size,
            )
        self._tick(f"evaluated {what}")
        return scores

    def evaluate(
        self, restorer: Restorer, what: str, tasks: tuple[str, ...] | None = None
    ) -> dict[str, dict[str, float]]:
        """:func:`evaluate_per_task` at this size's ``n_per_task``; one progress job."""
        with torch.inference_mode():
            scores = evaluate_per_task(
                restorer,
                self.data(),
                self.settings.n_per_task,
                seed=self.seed,
                device=self.device,
                image_size=self.settings.image_size,
                batch_size=self.settings.eval_batch_size,
                tasks=tasks,
            )
        self._tick(f"evaluated {what}")
        return scores
