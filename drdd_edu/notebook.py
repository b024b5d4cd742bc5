"""Small helpers the notebooks share: the smoke-size switch, seeding and figure saving.

* ``DRDD_EDU_SMOKE=1`` (set by the test harness) asks every notebook for its small size,
  so it runs within its CI budget; unset, notebooks run at full size.
* ``DRDD_EDU_FIGURES`` redirects saved figures (the test harness writes them to
  ``test-artifacts/figures`` so a test run leaves the committed ``figures/`` alone).
* Every saved or rendered figure meets the course's figure standard (issue 15, item 6):
  at least :data:`MIN_DPI` dots per inch and no visible text under :data:`MIN_FONT_PT` points;
  :func:`check_figure` enforces it for :func:`savefig`, the widgets and the experiment runner.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "is_smoke",
    "pick",
    "seed_everything",
    "figures_dir",
    "savefig",
    "check_figure",
    "MIN_DPI",
    "MIN_FONT_PT",
    "report_runtime",
    "SlowNotebookWarning",
    "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the lowest resolution a course figure may be saved or rendered at
MIN_DPI: int = 100
#: the smallest font size (points) of any visible text in a course figure
MIN_FONT_PT: float = 8.0


def is_smoke() -> bool:
    """True when the notebooks should run at their small (CI) size."""
    return os.environ.get("DRDD_EDU_SMOKE", "0").strip().lower() in ("1", "true", "yes")


def pick(full, smoke):  # noqa: ANN001, ANN201 — any pair of values
    """Return ``smoke`` under the smoke switch, else ``full``."""
    return smoke if is_smoke() else full


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def figures_dir() -> Path:
    """Where figures go: ``$DRDD_EDU_FIGURES`` or the repository's ``figures/``."""
    path = Path(os.environ.get("DRDD_EDU_FIGURES", REPO_ROOT / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _visible_texts(artist, out: list) -> list:  # noqa: ANN001 — matplotlib artists
    """The visible, non-empty text artists drawn under ``artist`` (depth first).

    Invisible artists are skipped with everything below them, and so are the axis decorations
    (tick labels, axis labels) of an axes turned off with ``ax.axis("off")``.
    """
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    if not artist.get_visible():
        return out
    if isinstance(artist, Text) and artist.get_text().strip():
        out.append(artist)
    children = artist.get_children()
    if isinstance(artist, Axes) and not artist.axison:
        children = [c for c in children if not isinstance(c, Axis)]
    for child in children:
        _visible_texts(child, out)
    return out


def check_figure(fig, name: str, dpi: float) -> None:  # noqa: ANN001 — a matplotlib Figure
    """Refuse a figure below the course's figure standard (issue 15, item 6).

    Raises:
        ValueError: ``dpi`` < :data:`MIN_DPI` (naming the figure), or some visible text — a title,
            axis or tick label, legend entry, suptitle, annotation — is smaller than
            :data:`MIN_FONT_PT` points (listing each offending text and its size).
    """
    if not (dpi >= MIN_DPI):
        raise ValueError(f"figure {name!r}: dpi={dpi!r} is below the course minimum of {MIN_DPI}")
    fig.draw_without_rendering()  # tick labels get their text only when drawn
    small = []
    for text in _visible_texts(fig, []):
        size = float(text.get_fontsize())
        if size < MIN_FONT_PT:
            shown = " ".join(text.get_text().split())
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            small.append(f"{shown!r} ({size:g} pt)")
    if small:
        raise ValueError(
            f"figure {name!r}: {len(small)} text(s) smaller than {MIN_FONT_PT:g} pt: "
            + "; ".join(small[:12])
            + ("; ..." if len(small) > 12 else "")
        )


def savefig(fig, name: str, dpi: int = 110) -> Path:  # noqa: ANN001 — a matplotlib Figure
    """Save ``fig`` as ``<figures_dir>/<name>.png`` (deterministic metadata) and return the path.

    The figure must meet the course standard (:func:`check_figure`: ``dpi`` ≥ 100, no visible
    text under 8 pt); otherwise a ``ValueError`` names it and nothing is written.
    """
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare name like '01_forward', got {name!r}")
    check_figure(fig, name, dpi)
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


class SlowNotebookWarning(UserWarning):
    """A notebook took longer than its stated runtime budget (a slow or busy machine)."""


def report_runtime(start: float, budget_s: float, now: float | None = None) -> float:
    """Print how long the notebook ran since ``start`` (a ``time.perf_counter()`` reading) and
    return the seconds.

    A notebook never *asserts* its own time: a student on a slow laptop or a busy JupyterHub must
    still reach the end. Over ``budget_s`` it issues a :class:`SlowNotebookWarning` instead; the
    test harness (``conftest.py``) is what enforces budgets, on the CI machine.
    """
    if not (budget_s > 0):
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    elapsed = (time.perf_counter() if now is None else now) - start
    size = "smoke" if is_smoke() else "full"
    print(f"notebook ran in {elapsed:.1f} s ({size} size; budget {budget_s:.0f} s)")
    if elapsed > budget_s:
        warnings.warn(
            f"this notebook took {elapsed:.0f} s, over its {budget_s:.0f} s budget at {size} "
            "size: the machine is slower or busier than the one the budget was set on "
            "(the results are unaffected)",
            SlowNotebookWarning,
            stacklevel=2,
        )
    return elapsed
