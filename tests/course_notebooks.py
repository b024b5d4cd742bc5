"""Tiny notebook folders for the course runner's tests (seconds to execute, not minutes).

* ``01_equations.py`` — markdown with inline and display equations, a seeded figure saved with
  ``savefig`` and shown inline, a tqdm bar inside the kernel and a line written straight to the
  kernel process's stderr (which must land in the log, not on the terminal);
* ``02_graded.py`` — a graded test cell (2 points) and a deliberately tiny budget, so a run is
  always "over budget";
* :func:`write_failing` — a notebook whose second code cell fails.
"""

from __future__ import annotations

from pathlib import Path

EQUATIONS = """\
# ---
# jupyter:
#   drdd_edu:
#     level: "1 — introductory (test)"
#     budget_s: 120
# ---

# %% [markdown]
# # Equations and a figure
#
# The residual marginal is $I_t = I_0 + \\bar\\alpha_t I_\\text{res} + \\bar\\beta_t \\epsilon$ and
#
# $$\\bar\\beta_t^2 = \\sum_{i \\le t} \\beta_i^2 .$$

# %%
import sys

import matplotlib.pyplot as plt
from tqdm.auto import tqdm

from drdd_edu.notebook import savefig, seed_everything

gen = seed_everything(0)
for _ in tqdm(range(50), desc="inside the kernel"):
    pass
print("KERNEL-FD2-MARKER", file=sys.__stderr__, flush=True)
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1, 2], [0, 1, 4])
savefig(fig, "test_course_parabola")
plt.show()
"""

GRADED = """\
# ---
# jupyter:
#   drdd_edu:
#     level: "2 — intermediate (test)"
#     budget_s: 0.001
# ---

# %% [markdown]
# # A graded exercise
#
# Display math: $$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon$$

# %% nbgrader={"grade": true, "grade_id": "check_sum", "points": 2, "solution": false}
import time

time.sleep(0.05)
assert 1 + 1 == 2
"""

FAILING = """\
# %% [markdown]
# # A broken notebook

# %%
x = 1

# %%
y = x + 1
assert y == 3, "y should be 3"

# %%
print("never reached")
"""


def write_tiny_course(folder: Path) -> Path:
    """Write ``01_equations.py`` and ``02_graded.py`` into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "01_equations.py").write_text(EQUATIONS, encoding="utf-8")
    (folder / "02_graded.py").write_text(GRADED, encoding="utf-8")
    return folder


def write_failing(folder: Path) -> Path:
    """Write ``01_broken.py`` (its cell 2 raises an AssertionError) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "01_broken.py").write_text(FAILING, encoding="utf-8")
    return folder
