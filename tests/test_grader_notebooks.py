"""The issue-13 attacks on the real notebook 01 (one grading, ~30-60 s at smoke size).

The submission calls the library functions the exercises ask the students to write (`q_sample`,
`ddim_converted_schedule`), adds a cell that installs a custom exception handler, an input
transformer that turns every cell with an `assert` into `pass` and a `torch.allclose` that always
agrees, and rewrites a test cell. Before issue 13 each of these alone earned 2 to 4 of the 4 points.
"""

from __future__ import annotations

import nbformat

from drdd_edu.assignments import build_student_version, grade, graded_cells
from drdd_edu.notebook import REPO_ROOT

SOURCE = REPO_ROOT / "notebooks" / "01_forward_processes.py"

ATTACK = """
import torch
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
get_ipython().input_transformers_cleanup.append(
    lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines
)
torch.allclose = lambda *a, **k: True
"""


def test_notebook_01_attacks_earn_nothing(tmp_path):
    student = tmp_path / "mallory_01_forward_processes.ipynb"
    build_student_version(SOURCE, student)
    nb = nbformat.read(student, as_version=4)
    cells = graded_cells(nb)
    cells["ex01-q-sample"].source = (
        "def my_q_sample(x0, x_in, t, schedule, noise):\n"
        "    return q_sample(x0, x_in, t, schedule, noise=noise)"
    )
    cells["ex01-ddim-coefficients"].source = (
        "def ddim_coefficients(T, beta_start=1e-4, beta_end=0.02):\n"
        "    s = ddim_converted_schedule(T, beta_start, beta_end)\n"
        "    return s.alphas_cumsum, s.betas2_cumsum"
    )
    cells["ex01-q-sample-test"].source = "pass  # nothing to see here"
    nb.cells.insert(nb.cells.index(cells["ex01-q-sample"]), nbformat.v4.new_code_cell(ATTACK))
    nbformat.write(nb, student)
    report = grade(student, env={"DRDD_EDU_SMOKE": "1", "OMP_NUM_THREADS": "1"}, timeout_s=300)
    assert report.total == 0 and report.max_total == 4, report.summary()
    errors = {c.grade_id: c.error for c in report.cells}
    assert "calls q_sample" in errors["ex01-q-sample-test"], errors
    assert "calls ddim_converted_schedule" in errors["ex01-ddim-coefficients-test"], errors
    assert "### BEGIN SOLUTION" in SOURCE.read_text()  # the source is untouched
