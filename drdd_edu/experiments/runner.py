"""Run an experiment end to end: train or reuse its networks, evaluate, write CSV + JSON and the
figure (see :mod:`drdd_edu.experiments`)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..notebook import check_figure
from . import aosa_exp, coupled, data_efficiency, matched_noise, noise_sweep
from .context import Context
from .io import ExperimentResult, check_seed, figure_path, read_results, write_results
from .sizes import EXPERIMENT_ORDER, SIZES, get_size, resolve_device_for

__all__ = ["EXPERIMENTS", "run_experiment", "load_results", "check_name"]

#: the experiments, in the order ``all`` runs them (later ones reuse earlier networks)
EXPERIMENTS: tuple[str, ...] = EXPERIMENT_ORDER

_MODULES: dict[str, ModuleType] = {
    "coupled": coupled,
    "data-efficiency": data_efficiency,
    "noise-sweep": noise_sweep,
    "matched-noise": matched_noise,
    "aosa": aosa_exp,
}


def check_name(name: str, size: str) -> None:
    """Raise ``ValueError`` for an unknown experiment or size."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    if size not in SIZES:
        raise ValueError(f"unknown experiment size {size!r}; choose one of {SIZES}")


def run_experiment(
    name: str,
    size: str = "smoke",
    results_dir: str | os.PathLike = "data/results",
    figures_dir: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike = "runs/experiments",
    device: str = "auto",
    progress: bool = True,
    seed: int = 0,
) -> ExperimentResult:
    """Run experiment ``name`` (one of :data:`EXPERIMENTS`) at ``size`` (one of ``SIZES``).

    Networks live in ``{runs_dir}/{size}/{run_name}``; finished runs with the same config are
    reused, other configs in a run folder raise
    :class:`~drdd_edu.experiments.runs.RunConfigMismatch`. Results go to
    ``{results_dir}/{name}-{size}.csv`` and ``.json``, the figure to
    ``{figures_dir or $DRDD_EDU_FIGURES or figures/}/exp_{name}-{size}.png``; a seed other than
    0 adds ``-seed{seed}`` to these names (the seed-0 files stay as they are).

    Raises:
        ValueError: unknown name/size or bad seed; RuntimeError: ``full`` without CUDA.
    """
    check_name(name, size)
    check_seed(seed)
    settings = get_size(size)
    dev = resolve_device_for(settings, device)
    module = _MODULES[name]
    t0 = time.perf_counter()
    ctx = Context(
        name=name,
        settings=settings,
        seed=seed,
        device=dev,
        runs_dir=Path(runs_dir) / size,
        progress=progress,
        total_jobs=module.n_jobs(settings),
    )
    with ctx:
        rows = module.execute(ctx)
    fig_path = figure_path(name, size, figures_dir, seed)
    meta: dict[str, Any] = {
        "experiment": name,
        "size": size,
        "command": (
            f"drdd-edu experiment {name} --size {size} --seed {seed} --device {device} "
            f"--runs-dir {runs_dir} --results-dir {results_dir}"
        ),
        "settings": settings.to_dict(),
        "seed": seed,
        "device": dev + (f" ({torch.cuda.get_device_name(dev)})" if dev.startswith("cuda") else ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "runs": [r.to_dict() for r in ctx.records] + ctx.extra_runs,
        "jobs": {"planned": ctx.total_jobs, "done": ctx.jobs_done},
        "figure_path": _portable(fig_path),
        **ctx.meta_extra,
    }
    fig = module.plot(rows, meta, _title(name, size))
    _save(fig, fig_path)
    meta["wall_s"] = time.perf_counter() - t0
    result = ExperimentResult(name, size, rows, meta, figure_path=fig_path, seed=seed)
    result.csv_path, result.json_path = write_results(result, results_dir)
    return result


def load_results(
    name: str, size: str, results_dir: str | os.PathLike = "data/results", seed: int = 0
) -> ExperimentResult | None:
    """The stored result of ``name`` at ``size`` and ``seed`` (None when it has not been run)."""
    check_name(name, size)
    return read_results(name, size, results_dir, seed)


_TITLES = {
    "coupled": "Coupled RDDM vs decoupled DRDD (same steps, same paired data)",
    "data-efficiency": "Data efficiency: scarce pairs, abundant unpaired clean images",
    "noise-sweep": "DRDD noise strength σ: at test time, at training time, residual net on I_t only",
    "matched-noise": "Coupled vs decoupled at matched noise (RDDM sum_scale = σ²)",
    "aosa": "AOSA: λ trajectories and the chosen objective",
}


def _title(name: str, size: str) -> str:
    return f"{_TITLES[name]} — size {size}"


_DPI = 110  # experiment figures, ≥ the course minimum (drdd_edu.notebook.MIN_DPI)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    check_figure(fig, path.stem, _DPI)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _portable(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (committed result files
    then hold no machine-specific absolute paths), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())
