"""Run the whole course: execute every notebook headlessly, save figures and HTML pages.

Notebooks are jupytext percent sources (``notebooks/NN_*.py``). Each is converted in memory,
executed with nbclient in a fresh kernel from the current environment (so it uses this
installation of ``drdd_edu``), and written as an executed ``.ipynb`` and an ``.html`` page
under the output folder. Figures go to ``figures/`` (or ``$DRDD_EDU_FIGURES``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .notebook import REPO_ROOT

__all__ = ["NotebookRun", "notebook_sources", "run_course"]


@dataclass
class NotebookRun:
    """The outcome of executing one notebook."""

    name: str
    seconds: float
    budget_s: float | None
    ipynb: Path
    html: Path | None


def notebook_sources(
    notebook_dir: Path | None = None, select: list[str] | None = None
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
    return sources


def _require_notebook_tools():  # noqa: ANN202
    try:
        import jupytext
        import nbclient
        import nbconvert
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise SystemExit(
            f"running the course needs the notebook extras ({err.name} is missing): "
            'pip install -e ".[notebooks]"'
        ) from err
    return jupytext, nbclient, nbconvert


def run_course(
    out_dir: Path | str = "build/course",
    smoke: bool = False,
    select: list[str] | None = None,
    timeout_s: int = 1800,
    html: bool = True,
) -> list[NotebookRun]:
    """Execute the notebooks in order; write ``out_dir/NN_name.ipynb`` and ``.html``.

    Args:
        out_dir: where executed notebooks and HTML pages go.
        smoke: run at the small CI size (``DRDD_EDU_SMOKE=1``) instead of full size.
        select: notebook name prefixes such as ``["01", "02"]``; all when None.
        timeout_s: per-cell timeout.
        html: also export HTML pages.
    Raises:
        nbclient's ``CellExecutionError`` naming the failing cell, if a notebook fails.
    """
    jupytext, nbclient, nbconvert = _require_notebook_tools()
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["DRDD_EDU_SMOKE"] = "1" if smoke else "0"
    os.environ.setdefault("MPLBACKEND", "Agg")
    runs = []
    sources = notebook_sources(select=select)
    for src in tqdm(sources, desc="notebooks", unit="nb"):
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        start = time.perf_counter()
        client = nbclient.NotebookClient(
            nb,
            timeout=timeout_s,
            kernel_name="python3",
            resources={"metadata": {"path": str(src.parent)}},
        )
        # the python3 kernelspec's argv[0] 'python' is mapped to sys.executable by jupyter_client,
        # so the kernel runs in this environment, with this installation of drdd_edu
        client.execute()
        seconds = time.perf_counter() - start
        ipynb = out / f"{src.stem}.ipynb"
        nbformat_write(nb, ipynb)
        html_path = None
        if html:
            body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
            html_path = out / f"{src.stem}.html"
            html_path.write_text(body, encoding="utf-8")
        budget = nb.metadata.get("drdd_edu", {}).get("budget_s")
        runs.append(NotebookRun(src.stem, seconds, budget, ipynb, html_path))
    return runs


def nbformat_write(nb, path: Path) -> None:  # noqa: ANN001
    import nbformat

    nbformat.write(nb, str(path))
