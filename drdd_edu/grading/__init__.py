"""Grading students' notebooks: isolation, a guarded test runner, reports.

One job per module:

* :mod:`.isolation` — the run folder, the scrubbed environment, bubblewrap, resource limits,
  killing a run's whole process tree;
* :mod:`.kernel` — one kernel per submission, driven over unix sockets, with timeouts that hold;
* :mod:`.guard` — the kernel-side snapshot/restore and test runner, and the pass/fail verdict;
* :mod:`.runner` — one submission from start to end;
* :mod:`.reports` — the CSV of grades and the HTML feedback.

:func:`drdd_edu.assignments.grade` and :func:`~drdd_edu.assignments.grade_many` are the entry
points.
"""

from __future__ import annotations

import warnings

from .isolation import SandboxUnavailable, sandbox_problem
from .runner import run_submission

__all__ = [
    "GradingNotIsolatedWarning",
    "NOT_ISOLATED",
    "SandboxUnavailable",
    "choose_sandbox",
    "run_submission",
    "sandbox_problem",
]

NOT_ISOLATED = (
    "grading is NOT isolated ({why}): students' code runs with your user's rights and can read "
    "and change any file you can (install bubblewrap; see the README, 'Grading untrusted code')"
)


class GradingNotIsolatedWarning(UserWarning):
    """Grading runs without the bubblewrap sandbox."""


def choose_sandbox(requested: bool | None) -> bool:
    """Whether to use the sandbox: ``requested``, or (None) whenever bubblewrap works here.

    Raises:
        SandboxUnavailable: ``requested`` is True and bubblewrap cannot run here.
    Warns:
        GradingNotIsolatedWarning: ``requested`` is None and bubblewrap cannot run here.
    """
    if requested is False:
        return False
    problem = sandbox_problem()
    if problem is None:
        return True
    if requested:
        raise SandboxUnavailable(f"cannot grade in the sandbox: {problem}")
    warnings.warn(NOT_ISOLATED.format(why=problem), GradingNotIsolatedWarning, stacklevel=3)
    return False
