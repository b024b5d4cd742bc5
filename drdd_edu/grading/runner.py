"""Execute one submission (its test cells already restored) in an isolated kernel; judge its tests.

:func:`run_submission` is the whole life of one kernel: a fresh run folder (:mod:`.isolation`), a
kernel (:mod:`.kernel`), the guard's setup (:mod:`.guard`), then every code cell in order. Ordinary
cells run as they are; test cells run through the guard, and pass only if the guard's token comes
back. Whatever happens — an error, a timeout, a kernel that dies or never starts — it returns the
verdict of every test cell that ran and one line saying why the rest did not, and the run folder
and every process of the run are gone afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import guard
from .isolation import prepare_run_dir
from .kernel import KernelSession, KernelStartError

__all__ = ["CellOutcome", "RunOutcome", "run_submission"]


@dataclass
class CellOutcome:
    passed: bool
    error: str | None = None


@dataclass
class RunOutcome:
    """Verdicts by cell index (test cells that ran), and why execution stopped early (or None)."""

    tests: dict[int, CellOutcome] = field(default_factory=dict)
    execution_error: str | None = None
    failure: str | None = None  # "timeout", "dead kernel", "no kernel", or None


def _error_output(error: str):  # noqa: ANN202
    import nbformat

    ename, _, evalue = error.partition(": ")
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[error])


def run_submission(
    nb,  # noqa: ANN001 — nbformat NotebookNode, executed in place
    test_cells: set[int],
    instructor_sources: list[str],
    *,
    env: dict[str, str],
    sandbox: bool,
    timeout_s: float,
    total_timeout_s: float | None,
    memory_mb: int | None,
    grade_ids: dict[int, str],
) -> RunOutcome:
    """Run the code cells of ``nb`` in order; ``test_cells`` (indices) go through the guard.

    Args:
        nb: the notebook to execute; outputs and execution counts are written into its cells.
        test_cells: indices of the instructor's test cells.
        instructor_sources: the code of the instructor's non-test cells (their imports are
            restored before each test).
        env: extra kernel environment variables.
        sandbox: run the kernel under bubblewrap.
        timeout_s: per-cell limit; total_timeout_s: limit for the whole notebook (None: none).
        memory_mb: address-space limit per process of the kernel.
        grade_ids: ``grade_id`` by cell index, for messages.
    """
    outcome = RunOutcome()
    start = time.monotonic()
    total_deadline = start + total_timeout_s if total_timeout_s else None
    import_src, modules = guard.import_statements(instructor_sources)
    runner = guard.new_runner_name()
    run = prepare_run_dir()
    session = KernelSession(run, env, sandbox=sandbox, memory_mb=memory_mb)
    try:
        try:
            session.start()
        except KernelStartError as err:
            outcome.execution_error, outcome.failure = f"no kernel: {err}", "no kernel"
            return outcome
        setup = session.execute(
            guard.setup_request(runner, import_src, modules),
            timeout_s=max(timeout_s, 120.0),
            silent=True,
            store_history=False,
        )
        if setup.status != "ok":
            detail = setup.reply.get("evalue") or setup.status
            outcome.execution_error = f"the grader's setup failed in the kernel: {detail}"
            outcome.failure = "dead kernel" if setup.status == "dead" else "no kernel"
            return outcome
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            limit = timeout_s
            if total_deadline is not None:
                limit = min(limit, total_deadline - time.monotonic())
                if limit <= 0:
                    outcome.execution_error = (
                        f"timeout: the notebook ran longer than {total_timeout_s:g} s in all; "
                        f"stopped before cell {index}"
                    )
                    outcome.failure = "timeout"
                    return outcome
            where = f"cell {index}" + (f" ({grade_ids[index]})" if index in grade_ids else "")
            if index in test_cells:
                expressions, token = guard.test_request(runner, cell.source, grade_ids[index])
                result = session.execute(
                    "", timeout_s=limit, store_history=False, user_expressions=expressions
                )
            else:
                result = session.execute(cell.source, timeout_s=limit)
            cell.outputs = result.outputs
            cell.execution_count = result.execution_count
            if index in test_cells:
                if result.status in ("ok", "error"):
                    passed, error = guard.verdict(result.reply, token)
                elif result.status == "interrupted":
                    passed, error = False, f"Timeout: the test ran longer than {limit:g} s"
                else:
                    passed, error = False, None
                if result.status in ("ok", "error", "interrupted"):
                    outcome.tests[index] = CellOutcome(passed, error)
                    if error:
                        cell.outputs.append(_error_output(error))
            if result.status == "timeout":
                whole = total_deadline is not None and time.monotonic() >= total_deadline
                outcome.execution_error = (
                    f"timeout: {where} ran longer than {limit:g} s"
                    + (" (the notebook's total limit)" if whole else "")
                    + " and did not stop when interrupted; its process tree was killed"
                )
                outcome.failure = "timeout"
                return outcome
            if result.status == "dead":
                outcome.execution_error = (
                    f"dead kernel: the kernel died while running {where} ({session.log_tail()})"
                )
                outcome.failure = "dead kernel"
                return outcome
        return outcome
    finally:
        session.kill()
        run.cleanup()
