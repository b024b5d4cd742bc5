"""The ``drdd-edu`` command line.

drdd-edu info                       versions, device, where things are
drdd-edu course [--smoke] [--only 01 02] [--out build/course]
                                    execute the notebooks, write figures and the offline HTML site
                                    (build/course/index.html); exit 2 if a notebook fails
drdd-edu notebooks [--out DIR]      write .ipynb files from the jupytext sources
drdd-edu assignments build [--out build/assignments] [--only 01 02] [--format ipynb py]
                                    write student versions (no solutions, no hidden tests)
drdd-edu assignments grade SUBMISSION... [--source notebooks/NN_x.py] [--csv grades.csv]
        [--feedback DIR] [--workers N] [--sandbox|--no-sandbox] [--timeout S] [--total-timeout S]
        [--memory-mb MB] [--full-size] [--json]
                                    grade returned notebooks; exit 2 if one cannot be graded
    drdd-edu train --config tiny-cpu [--resume] / sample / evaluate / bench
                                    training and checkpoints (see drdd_edu.train_cli)
    drdd-edu experiment NAME|all [--size smoke|cpu|cpu-long|gpu|full]
                                    the DRDD experiments (see drdd_edu.experiments)

Errors: a failure the user can fix — a bad option, config or checkpoint, a device this machine
lacks, a full or read-only disk, a run folder another process is training into — ends with one
line on stderr, ``drdd-edu COMMAND: error: <cause first>``, and exit status 2, never a
traceback (:func:`run_guarded`, one handler for every sub-command). ``--debug`` (before or after
the sub-command) or ``DRDD_EDU_DEBUG=1`` prints the traceback as well. Anything else — a bug —
still raises with its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import train_cli

__all__ = [
    "main",
    "build_parser",
    "OneLineArgumentParser",
    "add_debug_option",
    "debug_enabled",
    "error_line",
    "run_guarded",
    "user_errors",
]

_DEBUG_HELP = "on an error, also print the traceback (or set DRDD_EDU_DEBUG=1)"


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``PROG: error: … (see PROG
    --help)``, exit status 2) instead of the usage block and then the error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` to ``parser`` and to all its sub-commands (nested ones too), so it may
    come before or after the sub-command's name."""
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _add_sub_debug(sub)


def _add_sub_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command without --debug leaves the top-level value alone
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _add_sub_debug(sub)


def debug_enabled(flag: bool = False) -> bool:
    """``--debug`` given, or ``DRDD_EDU_DEBUG`` set to anything but "", 0, false, no, off."""
    env = os.environ.get("DRDD_EDU_DEBUG", "").strip().lower()
    return bool(flag) or env not in ("", "0", "false", "no", "off")


def user_errors(command: str | None = None) -> tuple[type[BaseException], ...]:
    """The exception types that are the user's to fix, reported in one line: bad values and
    configs (``ValueError``), files and disks (``OSError``: missing, read-only, full, a folder
    in the way), unusable checkpoints, run folders in use, missing devices and diverged runs.
    ``experiment`` adds ``RuntimeError`` (its sizes refuse a machine without the GPU they
    need), and so does ``assignments`` (a grading kernel that cannot start)."""
    from .checkpoint import CheckpointError, RunLockedError
    from .train import DeviceUnavailableError

    errors: tuple[type[BaseException], ...] = (
        ValueError,
        OSError,
        CheckpointError,
        RunLockedError,
        DeviceUnavailableError,
        FloatingPointError,  # a diverged training run (its last checkpoint is kept)
    )
    return (*errors, RuntimeError) if command in ("experiment", "assignments") else errors


def error_line(command: str, err: BaseException) -> str:
    """``drdd-edu COMMAND: error: MESSAGE`` on one line; an ``OSError`` reads "cause: file"."""
    if isinstance(err, OSError) and err.strerror:
        msg = err.strerror
        if err.filename is not None:
            msg += f": {os.fsdecode(err.filename)}"
        if err.filename2 is not None:
            msg += f" -> {os.fsdecode(err.filename2)}"
    else:
        msg = str(err) or type(err).__name__
    return f"drdd-edu {command}: error: {' '.join(msg.split())}"


def _command_name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if isinstance(action, str) else str(args.command)


def run_guarded(args: argparse.Namespace, run: Callable[[], int | None]) -> int:
    """Run ``run()`` (a sub-command) and return its exit status; a user-facing error
    (:func:`user_errors`) prints :func:`error_line` — after its traceback with ``--debug`` or
    ``DRDD_EDU_DEBUG=1`` — and returns 2. Other exceptions propagate."""
    command = _command_name(args)
    try:
        result = run()
    except user_errors(args.command) as err:
        if debug_enabled(getattr(args, "debug", False)):
            traceback.print_exc()
        print(error_line(command, err), file=sys.stderr, flush=True)
        return 2
    if result is None:  # pragma: no cover - argparse rejects unknown commands
        raise AssertionError(f"unhandled command {command}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="drdd-edu",
        description="Residual denoising diffusion (RDDM, DRDD) for image restoration: a teaching toolkit.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("info", help="print versions, the compute device and paths")

    course = sub.add_parser(
        "course", help="execute every notebook headlessly; write figures and HTML pages"
    )
    course.add_argument("--smoke", action="store_true", help="run at the small CI size")
    course.add_argument(
        "--only", nargs="+", metavar="NN", help="notebook prefixes to run, e.g. 01 02"
    )
    course.add_argument(
        "--out",
        type=Path,
        default=Path("build/course"),
        help="output folder (default build/course)",
    )
    course.add_argument("--no-html", action="store_true", help="skip the HTML export")
    course.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    course.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="folder of the NN_name.py sources (default: the repository's notebooks/)",
    )

    nbs = sub.add_parser("notebooks", help="write .ipynb files from the jupytext percent sources")
    nbs.add_argument("--out", type=Path, default=None, help="folder (default: beside the sources)")

    asg = sub.add_parser("assignments", help="build student versions of the exercises; grade them")
    asg_sub = asg.add_subparsers(dest="action", required=True)
    build = asg_sub.add_parser(
        "build",
        help="write student notebooks (solutions stubbed out, hidden tests removed) and the "
        "instructor versions with every exercise solved (OUT/instructor/)",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=Path("build/assignments"),
        help="output folder (default build/assignments)",
    )
    build.add_argument("--only", nargs="+", metavar="NN", help="notebook prefixes, e.g. 01 02")
    build.add_argument(
        "--format",
        nargs="+",
        choices=["ipynb", "py"],
        default=["ipynb"],
        help="student file formats (default ipynb)",
    )
    grade = asg_sub.add_parser(
        "grade", help="grade returned notebooks (in a sandbox when bubblewrap is installed)"
    )
    grade.add_argument(
        "submission",
        type=Path,
        nargs="+",
        help="students' .ipynb files, e.g. submitted/*/01_*.ipynb",
    )
    grade.add_argument(
        "--source",
        type=Path,
        default=None,
        help="instructor notebook (default: inferred from the submission's name)",
    )
    grade.add_argument(
        "--full-size", action="store_true", help="run at full size instead of the CI size"
    )
    grade.add_argument("--timeout", type=float, default=600, help="per-cell timeout in seconds")
    grade.add_argument(
        "--total-timeout",
        type=float,
        default=None,
        help="timeout for a whole notebook in seconds (default: none beyond the per-cell one)",
    )
    box = grade.add_mutually_exclusive_group()
    box.add_argument(
        "--sandbox",
        dest="sandbox",
        action="store_true",
        default=None,
        help="require the bubblewrap sandbox (the default whenever bwrap works here)",
    )
    box.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        help="grade without the sandbox (students' code runs with your rights)",
    )
    grade.add_argument(
        "--memory-mb",
        type=int,
        default=4096,
        help="address-space limit per kernel process in MiB (default 4096)",
    )
    grade.add_argument("--workers", type=int, default=1, help="notebooks graded at once")
    grade.add_argument("--csv", type=Path, default=None, help="write the grades to this CSV file")
    grade.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="folder for HTML feedback per student (default: feedback/ beside the CSV)",
    )
    grade.add_argument("--json", action="store_true", help="print the reports as JSON")
    train_cli.add_commands(sub)  # train, sample, evaluate, bench, experiment
    add_debug_option(parser)
    return parser


def _info() -> int:
    import torch

    from . import __version__
    from .notebook import REPO_ROOT, figures_dir

    print(f"drdd_edu {__version__}  (python {sys.version.split()[0]}, torch {torch.__version__})")
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; threads: {torch.get_num_threads()}")
    print(f"notebooks: {REPO_ROOT / 'notebooks'}\nfigures: {figures_dir()}")
    return 0


def _course(args: argparse.Namespace) -> int:
    from .course import NotebookFailed, run_course, summary

    try:
        runs = run_course(
            args.out,
            smoke=args.smoke,
            select=args.only,
            timeout_s=args.timeout,
            html=not args.no_html,
            notebook_dir=args.notebooks,
        )
    except (NotebookFailed, FileNotFoundError, ValueError) as err:
        print(f"drdd-edu course: error: {err}", file=sys.stderr)
        return 2
    print(summary(runs, args.out))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    import jupytext

    from .course import notebook_sources

    for src in notebook_sources():
        target = (
            (args.out / src.with_suffix(".ipynb").name) if args.out else src.with_suffix(".ipynb")
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(jupytext.read(src), target, fmt="ipynb")
        print(target)
    return 0


def _assignments(args: argparse.Namespace) -> int:
    # an AssignmentError (a ValueError), a missing file or a kernel that cannot start (a
    # RuntimeError) is reported by run_guarded: "drdd-edu assignments build|grade: error: …",
    # exit status 2
    from .assignments import build_all

    if args.action == "build":
        written = build_all(args.out, select=args.only, formats=args.format)
        if not written:
            print("no selected notebook has graded exercises", file=sys.stderr)
            return 1
        for path in written:
            print(path)
        return 0
    return _grade(args)


def _grade(args: argparse.Namespace) -> int:
    import json

    from .assignments import grade, grade_many
    from .grading import NOT_ISOLATED, choose_sandbox, sandbox_problem
    from .grading.reports import write_csv, write_feedback

    if args.sandbox is None:
        problem = sandbox_problem()
        if problem:
            print(f"warning: {NOT_ISOLATED.format(why=problem)}", file=sys.stderr)
        sandbox = problem is None
    else:
        sandbox = choose_sandbox(args.sandbox)
        if not sandbox:
            print(f"warning: {NOT_ISOLATED.format(why='--no-sandbox')}", file=sys.stderr)
    options = dict(
        smoke=not args.full_size,
        timeout_s=args.timeout,
        total_timeout_s=args.total_timeout,
        sandbox=sandbox,
        memory_mb=args.memory_mb,
    )
    single = len(args.submission) == 1 and args.csv is None and args.feedback is None
    if single:  # one notebook: errors are fatal, the report is printed in full
        reports = [grade(args.submission[0], args.source, **options)]
    else:
        reports = grade_many(args.submission, args.source, workers=args.workers, **options)
    if args.csv:
        write_csv(reports, args.csv)
    feedback = args.feedback or (args.csv.parent / "feedback" if args.csv else None)
    if feedback:
        for report in reports:
            write_feedback(report, feedback)
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if single else data, indent=2))
    elif single:
        print(reports[0].summary())
    else:
        for report in reports:
            print(report.line())
    malformed = [r for r in reports if r.failure == "malformed"]
    for report in malformed:
        print(f"drdd-edu assignments grade: error: {report.execution_error}", file=sys.stderr)
    return 2 if malformed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(args, lambda: _run(args))


def _run(args: argparse.Namespace) -> int | None:
    if args.command == "info":
        return _info()
    if args.command == "course":
        return _course(args)
    if args.command == "notebooks":
        return _notebooks(args)
    if args.command == "assignments":
        return _assignments(args)
    return train_cli.dispatch(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
