"""Run the whole course: execute every notebook headlessly, save figures, build the HTML site.

Notebooks are jupytext percent sources (``notebooks/NN_*.py``). Each is converted in memory and
executed with nbclient in a fresh kernel from the current environment (so it uses this
installation of ``drdd_edu``). Under the output folder (default ``build/course``) go:

* ``NN_name.ipynb`` — the executed notebook;
* ``logs/NN_name.log`` — whatever the kernel process wrote to its own stdout/stderr (outside
  the notebook's outputs): it never reaches the terminal;
* ``runs.json`` — each notebook's measured time, budget and figures, for the site's index;
* the HTML site (``index.html``, one page per notebook, MathJax bundled): see
  :mod:`drdd_edu.site`.

Figures go to ``figures/`` (or ``$DRDD_EDU_FIGURES``). The kernel talks to nbclient over IPC
(Unix sockets in a private temporary folder) rather than unencrypted TCP on localhost.

Runtime budgets are enforced by the test harness (``conftest.py``), not here: a notebook that
takes longer than its budget is reported as a warning in the summary, never as a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .notebook import REPO_ROOT, figures_dir

__all__ = [
    "NotebookFailed",
    "NotebookRun",
    "budget_for",
    "notebook_sources",
    "run_course",
    "summary",
]

RUNS_FILE = "runs.json"


@dataclass
class NotebookRun:
    """The outcome of executing one notebook.

    ``figures`` are the files the notebook wrote (new or rewritten) in the figures folder.
    """

    name: str
    seconds: float
    budget_s: float | None
    ipynb: Path
    html: Path | None
    log: Path
    smoke: bool = False
    figures: list[Path] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        """True when the measured time exceeds the notebook's budget (a warning, not an error)."""
        return self.budget_s is not None and self.seconds > self.budget_s


class NotebookFailed(RuntimeError):
    """A notebook failed to run; ``str(err)`` is one line naming the notebook and the cell."""

    def __init__(self, message: str, name: str, cell_index: int | None, partial: Path, log: Path):
        super().__init__(message)
        self.name = name
        self.cell_index = cell_index
        self.partial = partial
        self.log = log


def notebook_sources(
    notebook_dir: Path | str | None = None, select: list[str] | None = None
) -> list[Path]:
    """The percent sources ``NN_*.py`` in ``notebook_dir`` (default: the repository's
    ``notebooks/``), optionally only those whose name starts with one of ``select``."""
    folder = Path(notebook_dir) if notebook_dir else REPO_ROOT / "notebooks"
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {folder}")
    sources = sorted(folder.glob("[0-9][0-9]_*.py"))
    if select:
        sources = [p for p in sources if any(p.name.startswith(s) for s in select)]
        if not sources:
            raise ValueError(f"no notebook in {folder} matches {select}")
    elif not sources:
        raise ValueError(f"no notebook NN_name.py in {folder}")
    return sources


def budget_for(metadata: dict, smoke: bool) -> float | None:
    """A notebook's runtime budget in seconds from its ``drdd_edu`` header metadata.

    ``budget_s`` is the smoke-size budget the test harness enforces; ``budget_full_s`` (if a
    notebook states one) the full-size budget, which otherwise defaults to ``budget_s``: the
    README's map promises at most 3 minutes at both sizes.
    """
    meta = metadata.get("drdd_edu", {}) or {}
    value = meta.get("budget_s") if smoke else meta.get("budget_full_s", meta.get("budget_s"))
    return None if value is None else float(value)


def _require_notebook_tools():  # noqa: ANN202
    try:
        import jupytext
        import nbclient
        import nbconvert  # noqa: F401 - needed by the site
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise SystemExit(
            f"running the course needs the notebook extras ({err.name} is missing): "
            'pip install -e ".[notebooks]"'
        ) from err
    return jupytext, nbclient


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    """``{file: (mtime_ns, size)}`` for the files directly in ``folder``."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file()}


def _first_line(text: str, limit: int = 160) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failure_message(src: Path, err: Exception, nb, cell_index: int | None) -> str:  # noqa: ANN001
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    where = "before its first cell"
    if cell_index is not None:
        where = f"cell {cell_index} ({_first_line(nb.cells[cell_index].source, 60)!r})"
    if isinstance(err, CellExecutionError):
        what = f"{err.ename}: {_first_line(err.evalue)}" if err.evalue else err.ename
    elif isinstance(err, CellTimeoutError):
        what = "timed out (raise --timeout?)"
    elif isinstance(err, DeadKernelError):
        what = "the kernel died"
    else:
        what = f"{type(err).__name__}: {_first_line(err)}"
    return f"{src.name} failed in {where}: {what}"


def _execute(
    src: Path, out: Path, env: dict[str, str], timeout_s: int, ipc_dir: Path
) -> tuple[object, float, Path]:
    """Execute one notebook; return (executed notebook, seconds, kernel log path).

    Raises:
        NotebookFailed: a cell raised, timed out, or the kernel died; the partially executed
            notebook is saved as ``out/NN_name.partial.ipynb``.
    """
    import jupytext
    import nbclient
    import nbformat
    from traitlets.config import Config

    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    config = Config()
    if os.name == "posix":
        # IPC transport (Unix sockets in a private folder): no open TCP ports, and no "Kernel is
        # running over TCP without encryption" warning from ipykernel
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(ipc_dir / src.stem[:3])
    current: dict[str, int] = {}
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        config=config,
        resources={"metadata": {"path": str(src.parent)}},
        on_cell_start=lambda cell, cell_index: current.update(index=cell_index),
    )
    log_path = out / "logs" / f"{src.stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out / f"{src.stem}.partial.ipynb"
    start = time.perf_counter()
    # the python3 kernelspec's argv[0] 'python' is mapped to sys.executable by jupyter_client, so
    # the kernel runs in this environment; its own stdout/stderr (not the cells' outputs) go to
    # the log
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            client.execute(env=env, stdout=log, stderr=log)
        except Exception as err:
            nbformat.write(nb, str(partial))
            message = _failure_message(src, err, nb, current.get("index"))
            raise NotebookFailed(
                f"{message} — partial notebook: {partial}, kernel log: {log_path}",
                src.stem,
                current.get("index"),
                partial,
                log_path,
            ) from err
    seconds = time.perf_counter() - start
    partial.unlink(missing_ok=True)
    return nb, seconds, log_path


def _record(out: Path, run: NotebookRun) -> None:
    """Merge ``run`` into ``out/runs.json`` (the site's index reads measured times from it)."""
    path = out / RUNS_FILE
    runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entry = asdict(run)
    for key in ("ipynb", "html", "log"):
        entry[key] = None if entry[key] is None else Path(entry[key]).relative_to(out).as_posix()
    entry["figures"] = [Path(p).name for p in run.figures]
    entry["seconds"] = round(run.seconds, 2)
    entry["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs[run.name] = entry
    path.write_text(json.dumps(runs, indent=1, sort_keys=True), encoding="utf-8")


def run_course(
    out_dir: Path | str = "build/course",
    smoke: bool = False,
    select: list[str] | None = None,
    timeout_s: int = 1800,
    html: bool = True,
    notebook_dir: Path | str | None = None,
    progress: bool = True,
) -> list[NotebookRun]:
    """Execute the notebooks in order; write ``out_dir/NN_name.ipynb``, the logs and the site.

    Args:
        out_dir: where executed notebooks, logs and HTML pages go.
        smoke: run at the small CI size (``DRDD_EDU_SMOKE=1``) instead of full size.
        select: notebook name prefixes such as ``["01", "02"]``; all when None.
        timeout_s: per-cell timeout.
        html: also build the HTML site (pages with bundled MathJax and an ``index.html``).
        notebook_dir: folder of the percent sources (default: the repository's ``notebooks/``).
        progress: show one progress bar over the notebooks (on stderr).
    Returns:
        one :class:`NotebookRun` per notebook, in order.
    Raises:
        NotebookFailed: one line naming the notebook and the failing cell, the partial
            notebook and the kernel log. Notebooks after it are not run.
    """
    _require_notebook_tools()
    import nbformat
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = notebook_sources(notebook_dir, select=select)
    env = dict(os.environ, DRDD_EDU_SMOKE="1" if smoke else "0")
    # figures shown inline, so the pages have them (an inherited MPLBACKEND=Agg would hide them)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    figures = figures_dir()
    runs: list[NotebookRun] = []
    ipc_dir = Path(tempfile.mkdtemp(prefix="drdd-kernel-"))
    # one bar: a step per notebook, and a last one for the site
    bar = tqdm(total=len(sources) + int(html), desc="course", unit="step", disable=not progress)
    try:
        for src in sources:
            bar.set_postfix_str(src.stem)
            before = _snapshot(figures)
            nb, seconds, log_path = _execute(src, out, env, timeout_s, ipc_dir)
            after = _snapshot(figures)
            written = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
            ipynb = out / f"{src.stem}.ipynb"
            nbformat.write(nb, str(ipynb))
            run = NotebookRun(
                name=src.stem,
                seconds=seconds,
                budget_s=budget_for(nb.metadata, smoke),
                ipynb=ipynb,
                html=(out / f"{src.stem}.html") if html else None,
                log=log_path,
                smoke=smoke,
                figures=written,
            )
            _record(out, run)
            runs.append(run)
            bar.update()
        if html:
            from .site import build_site

            bar.set_postfix_str("HTML site")
            build_site(out)
            bar.update()
    finally:
        bar.close()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    return runs


def summary(runs: list[NotebookRun], out_dir: Path | str | None = None) -> str:
    """A short report: per notebook its time (and budget), figures written and page; then the
    site's index and one warning line per notebook over its budget."""
    if not runs:
        return "no notebook was run"
    width = max(len(r.name) for r in runs)
    times = [
        f"{r.seconds:.1f} s" + (f" / {r.budget_s:g} s" if r.budget_s is not None else "")
        for r in runs
    ]
    time_width = max(len(t) for t in times + ["time / budget"])
    lines = [f"{'notebook':<{width}}  {'time / budget':>{time_width}}  {'figures':<11} page"]
    for r, t in zip(runs, times, strict=True):
        n = len(r.figures)
        figures = f"{n} figure" + ("s" if n != 1 else "")
        lines.append(f"{r.name:<{width}}  {t:>{time_width}}  {figures:<11} {r.html or r.ipynb}")
    size = "smoke" if runs[0].smoke else "full"
    total = sum(r.seconds for r in runs)
    lines.append(
        f"{len(runs)} notebook(s) at {size} size in {total:.0f} s; logs in {runs[0].log.parent}"
    )
    if out_dir is not None and (Path(out_dir) / "index.html").exists():
        lines.append(f"course site: {Path(out_dir) / 'index.html'}")
    for r in runs:
        if r.slow:
            lines.append(
                f"warning: {r.name} took {r.seconds:.1f} s, over its {r.budget_s:g} s "
                f"{size}-size budget (a slow or busy machine?); not a failure"
            )
    return "\n".join(lines)
