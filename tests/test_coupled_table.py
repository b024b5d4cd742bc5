"""The coupled experiment's table check and text table (used by notebook 08)."""

from __future__ import annotations

import copy

import pytest

from drdd_edu.degradations import TASKS
from drdd_edu.experiments import load_results
from drdd_edu.experiments.coupled import check_rows, format_table
from drdd_edu.notebook import REPO_ROOT


def _rows(methods=("rddm", "drdd")) -> list[dict]:
    rows = []
    for i, m in enumerate(methods):
        per_task = [
            {
                "method": m,
                "task": t,
                "psnr": 20.0 + i + k,
                "ssim": 0.5 + 0.01 * k,
                "n": 4,
                "psnr_in": 18.0 + k,
                "ssim_in": 0.4 + 0.02 * k,
            }
            for k, t in enumerate(TASKS)
        ]
        avg = {
            key: sum(r[key] for r in per_task) / len(per_task)
            for key in ("psnr", "ssim", "psnr_in", "ssim_in")
        }
        rows += per_task + [{"method": m, "task": "average", "n": 4, **avg}]
    return rows


def test_a_well_formed_table_passes_and_formats() -> None:
    rows = _rows(("rddm", "drdd", "drdd_cond"))
    check_rows(rows)
    text = format_table(rows).splitlines()
    assert len(text) == 1 + len(TASKS) + 1
    assert text[-1].startswith("average") and "drdd_cond" in text[0]
    assert f"{20.0 + 2 + 2:9.2f} / {0.52:.3f}" in text[3]  # drdd_cond, third task


def _broken(change) -> list[dict]:
    rows = copy.deepcopy(_rows())
    change(rows)
    return rows


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda rows: rows.pop(0), "not one row per method and task"),
        (lambda rows: rows.append(dict(rows[0])), "duplicated"),
        (lambda rows: [r.update(method="other") for r in rows if r["method"] == "drdd"], "methods"),
        (lambda rows: rows[1].update(ssim=float("nan")), "not finite"),
        (lambda rows: rows[1].update(ssim=1.5), "SSIM outside"),
        (lambda rows: rows[1].pop("psnr_in"), "no column"),
        (lambda rows: rows[6].update(psnr_in=0.0), "input scores or n differ"),
        (lambda rows: [r.update(n=0) for r in rows if r["task"] == TASKS[0]], "n = 0"),
        (lambda rows: [r.update(n=5) for r in rows if r["task"] == TASKS[0]], "not stratified"),
        (lambda rows: rows[5].update(ssim=0.9), "average ssim is not the mean"),
    ],
)
def test_a_broken_table_is_named(change, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_rows(_broken(change))


def test_the_shipped_tables_pass() -> None:
    shipped = load_results("coupled", "cpu", results_dir=REPO_ROOT / "data" / "results")
    assert shipped is not None
    check_rows(shipped.rows)
    assert "noise_stage_wiener" in format_table(shipped.rows)
