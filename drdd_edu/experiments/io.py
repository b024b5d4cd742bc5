"""Experiment results on disk: ``{results_dir}/{name}-{size}.csv`` and ``.json``, and the figure
``{figures_dir}/exp_{name}-{size}.png``.

The JSON file is ``{"meta": {...}, "rows": [...]}``; the CSV holds the same rows (one column per
key, in the experiment's schema order). NaN is written as ``NaN`` in JSON and ``nan`` in CSV.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ROW_KEYS",
    "ExperimentResult",
    "check_seed",
    "result_paths",
    "figure_path",
    "write_results",
    "read_results",
]

#: the row schema of each experiment (column order of the CSV)
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "coupled": ("method", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"),
    "data-efficiency": (
        "method",
        "fraction",
        "n_pairs",
        "task",
        "psnr",
        "ssim",
        "psnr_in",
        "ssim_in",
        "psnr_drop",
        "ssim_drop",
        "n",
    ),
    "noise-sweep": ("sweep", "method", "sigma", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"),
    "matched-noise": ("sigma", "method", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"),
    "aosa": (
        "task",
        "choice",
        "lambda_final",
        "decided_at_step",
        "decided",
        "psnr",
        "ssim",
        "psnr_in",
        "ssim_in",
        "choice_slow",
        "lambda_final_slow",
        "decided_at_step_slow",
        "decided_slow",
    ),
}


@dataclass
class ExperimentResult:
    """An experiment's rows and metadata and the files they were written to."""

    name: str
    size: str
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    csv_path: Path | None = None
    json_path: Path | None = None
    figure_path: Path | None = None
    seed: int = 0


def check_seed(seed: object) -> None:
    """Raise ``ValueError`` unless ``seed`` is an int ≥ 0 (bools refused)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")


def _stem(name: str, size: str, seed: int) -> str:
    """``NAME-SIZE`` for seed 0 (the shipped results), ``NAME-SIZE-seedN`` for other seeds, so a
    second seed never overwrites the first."""
    check_seed(seed)
    return f"{name}-{size}" + (f"-seed{seed}" if seed else "")


def result_paths(
    name: str, size: str, results_dir: str | os.PathLike, seed: int = 0
) -> tuple[Path, Path]:
    """(csv path, json path) of an experiment's results: ``{results_dir}/NAME-SIZE[-seedN]``."""
    base = Path(results_dir) / _stem(name, size, seed)
    return base.with_suffix(".csv"), base.with_suffix(".json")


def figure_path(name: str, size: str, figures_dir: str | os.PathLike | None, seed: int = 0) -> Path:
    """``{figures_dir or $DRDD_EDU_FIGURES or figures/}/exp_NAME-SIZE[-seedN].png`` (folder
    made)."""
    if figures_dir is None:
        from ..notebook import figures_dir as default_figures_dir

        folder = default_figures_dir()
    else:
        folder = Path(figures_dir)
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"exp_{_stem(name, size, seed)}.png"


def write_results(result: ExperimentResult, results_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``result``'s rows to CSV and rows + meta to JSON; returns the two paths."""
    csv_path, json_path = result_paths(result.name, result.size, results_dir, result.seed)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    keys = ROW_KEYS[result.name]
    for row in result.rows:
        if set(row) != set(keys):
            raise ValueError(f"row {row} does not match the {result.name!r} schema {keys}")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(keys))
        writer.writeheader()
        writer.writerows(result.rows)
    payload = {"meta": result.meta, "rows": result.rows}
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return csv_path, json_path


def read_results(
    name: str, size: str, results_dir: str | os.PathLike, seed: int = 0
) -> ExperimentResult | None:
    """The stored result of ``name`` at ``size`` and ``seed``, or None when its JSON file is
    absent."""
    csv_path, json_path = result_paths(name, size, results_dir, seed)
    if not json_path.is_file():
        return None
    try:
        payload = json.loads(json_path.read_text())
        meta, rows = payload["meta"], payload["rows"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{json_path} is not an experiment result file: {err}") from err
    fig = meta.get("figure_path")
    if fig and not Path(fig).is_absolute() and not Path(fig).exists():
        # written relative to the directory the experiment ran in: for the default layout
        # (data/results/ beside figures/) that is two levels above the results folder
        beside = json_path.resolve().parent.parent.parent / fig
        fig = str(beside) if beside.exists() else fig
    return ExperimentResult(
        name=name,
        size=size,
        rows=rows,
        meta=meta,
        csv_path=csv_path if csv_path.is_file() else None,
        json_path=json_path,
        figure_path=Path(fig) if fig else None,
        seed=seed,
    )
