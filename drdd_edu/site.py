"""The course as a static web site that works offline.

``build_site(out)`` turns the executed notebooks ``out/NN_name.ipynb`` (written by
:func:`drdd_edu.course.run_course`) into

* ``out/NN_name.html`` — one page per notebook (nbconvert's ``lab`` template), with links to the
  index and to the previous / next notebook at the top and the bottom;
* ``out/index.html`` — the notebook map: level, title, budget, measured time, figures, points;
* ``out/_static/mathjax/`` — MathJax 2 copied from the ``jupyter-server-mathjax`` package, so
  equations are typeset without internet (the pages load nothing from the network: figures are
  embedded as data URIs, and the template's CDN scripts for require.js, widgets and mermaid are
  left out — the notebooks use none of them in their saved outputs).

Measured times come from ``out/runs.json`` (see :mod:`drdd_edu.course`).
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from pathlib import Path

__all__ = ["build_site", "install_mathjax", "page_info", "site_pages"]

MATHJAX_DIR = "_static/mathjax"
# MathJax 2's documented "local configuration file" mechanism: loaded after the combined config;
# use the bundled STIX-Web web fonts (the package ships no TeX fonts) and never an image font.
MATHJAX_LOCAL_CONFIG = """\
MathJax.Hub.Config({
  "HTML-CSS": {
    availableFonts: [],
    preferredFont: null,
    webFont: "STIX-Web",
    imageFont: null,
    linebreaks: { automatic: true }
  },
  messageStyle: "none"
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/drdd_edu.js");
"""
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local/drdd_edu"

NAV_CSS = """
nav.drdd-nav { display: flex; justify-content: space-between; gap: 1em; margin: 0.5em 0 1.5em;
  padding: 0.5em 1em; border: 1px solid #ddd; border-radius: 4px; background: #f7f7f7;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: 14px; }
nav.drdd-nav.bottom { margin: 1.5em 0 0.5em; }
nav.drdd-nav a { text-decoration: none; }
"""

# A page: nbconvert's lab template without its CDN scripts, plus the navigation bar.
PAGE_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style type="text/css">{{ resources.drdd_nav_css }}</style>{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{{ resources.drdd_nav_top }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.drdd_nav_bottom }}
{{ super() }}
{% endblock body_footer %}
"""

INDEX_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em;
  color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.4em 0.6em; text-align: left;
  vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
.slow { color: #a15c00; }
.muted { color: #777; }
"""


def install_mathjax(out: Path | str) -> Path:
    """Copy MathJax 2 from the ``jupyter-server-mathjax`` package into ``out/_static/mathjax``.

    Returns:
        the folder holding ``MathJax.js``.
    Raises:
        SystemExit: the package is not installed (it is in the ``notebooks`` extra).
    """
    try:
        import jupyter_server_mathjax
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise SystemExit(
            "the course site needs jupyter-server-mathjax (offline MathJax): "
            'pip install -e ".[notebooks]"'
        ) from err
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (source / "MathJax.js").is_file():
        raise FileNotFoundError(f"MathJax.js not found in {source}")
    target = Path(out) / MATHJAX_DIR
    # the SVG output jax is not shipped (only its fonts): leave them out
    shutil.copytree(
        source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("SVG", "*.py", "*.pyc")
    )
    local = target / "config" / "local" / "drdd_edu.js"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(MATHJAX_LOCAL_CONFIG, encoding="utf-8")
    return target


def _title(nb) -> str:  # noqa: ANN001 - an nbformat NotebookNode
    """The first ``# `` heading of the first markdown cells, or ''."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return ""


def page_info(nb) -> dict:  # noqa: ANN001 - an nbformat NotebookNode
    """What the index shows from a notebook itself: ``title``, ``level`` (from its ``drdd_edu``
    header metadata), ``budget_s`` and ``points`` (the sum over its nbgrader test cells)."""
    from .assignments import graded_cells

    meta = nb.metadata.get("drdd_edu", {}) or {}
    points = 0.0
    for cell in graded_cells(nb).values():
        grading = cell.metadata.get("nbgrader", {})
        if grading.get("grade"):
            points += float(grading.get("points", 0))
    return {
        "title": _title(nb),
        "level": str(meta.get("level", "")),
        "budget_s": meta.get("budget_s"),
        "points": points,
    }


def site_pages(out: Path | str) -> list[Path]:
    """The executed notebooks ``out/NN_name.ipynb`` in course order (partial runs excluded)."""
    return sorted(
        p for p in Path(out).glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".partial.ipynb")
    )


def _nav(pages: list[Path], i: int, titles: dict[str, str], where: str) -> str:
    def link(page: Path, rel: str, arrow: str) -> str:
        label = f"{page.stem[:2]} {titles.get(page.stem, page.stem)}"
        text = f"{arrow} {label}" if rel == "prev" else f"{label} {arrow}"
        return f'<a rel="{rel}" href="{page.stem}.html">{html.escape(text)}</a>'

    prev = link(pages[i - 1], "prev", "←") if i > 0 else "<span></span>"
    nxt = link(pages[i + 1], "next", "→") if i + 1 < len(pages) else "<span></span>"
    index = '<a rel="index" href="index.html">Course index</a>'
    return f'<nav class="drdd-nav {where}">{prev}{index}{nxt}</nav>'


def _exporter():  # noqa: ANN202 - an nbconvert HTMLExporter
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"drdd_page.html.j2": PAGE_TEMPLATE})],
        template_file="drdd_page.html.j2",
        mathjax_url=MATHJAX_URL,
    )
    # nbconvert warns on every figure without alt text: not for the terminal
    quiet = logging.getLogger("drdd_edu.site.nbconvert")
    quiet.setLevel(logging.ERROR)
    exporter.log = quiet
    return exporter


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _index_html(rows: list[dict]) -> str:
    body = []
    for r in rows:
        run = r.get("run") or {}
        seconds = run.get("seconds")
        budget = run.get("budget_s", r["budget_s"])
        slow = seconds is not None and budget is not None and seconds > budget
        measured = _fmt_seconds(seconds)
        if run:
            size = "smoke" if run.get("smoke") else "full"
            measured += f' <span class="muted">({size} size, {html.escape(run["finished"])})</span>'
        if slow:
            measured = f'<span class="slow" title="over its budget">{measured}</span>'
        figures = len(run.get("figures", [])) if run else None
        points = f"{r['points']:g}" if r["points"] else "—"
        body.append(
            "<tr>"
            f'<td class="num">{html.escape(r["number"])}</td>'
            f'<td><a href="{html.escape(r["page"])}">{html.escape(r["title"] or r["name"])}</a>'
            f'<br><span class="muted">{html.escape(r["name"])}</span></td>'
            f"<td>{html.escape(r['level'])}</td>"
            f'<td class="num">{_fmt_seconds(budget)}</td>'
            f'<td class="num">{measured}</td>'
            f'<td class="num">{"—" if figures is None else figures}</td>'
            f'<td class="num">{points}</td>'
            "</tr>"
        )
    rows_html = "\n".join(body)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>drdd_edu — the course</title>
<style type="text/css">{INDEX_CSS}</style>
</head>
<body>
<h1>drdd_edu — residual denoising diffusion, the course</h1>
<p>Executed notebooks, in order. Each page has links to the previous and next notebook; the
equations are typeset with a bundled MathJax, so the site works without internet.
Points are those of the graded exercises (<code>drdd-edu assignments</code>).</p>
<table>
<thead><tr><th>#</th><th>notebook</th><th>level</th><th>budget</th><th>measured</th>
<th>figures written</th><th>points</th></tr></thead>
<tbody>
{rows_html}
</tbody>
</table>
</body>
</html>
"""


def build_site(out: Path | str) -> Path:
    """Write the HTML pages, ``index.html`` and the bundled MathJax for the executed notebooks
    in ``out``; return the index's path.

    Raises:
        FileNotFoundError: ``out`` holds no executed notebook ``NN_name.ipynb``.
    """
    import nbformat

    out = Path(out)
    pages = site_pages(out)
    if not pages:
        raise FileNotFoundError(f"no executed notebook NN_name.ipynb in {out}")
    install_mathjax(out)
    runs_file = out / "runs.json"
    runs = json.loads(runs_file.read_text(encoding="utf-8")) if runs_file.exists() else {}
    notebooks = {p.stem: nbformat.read(str(p), as_version=4) for p in pages}
    infos = {name: page_info(nb) for name, nb in notebooks.items()}
    titles = {name: info["title"] for name, info in infos.items()}
    exporter = _exporter()
    for i, page in enumerate(pages):
        nb = notebooks[page.stem]
        nb.metadata["title"] = f"{page.stem[:2]} — {titles[page.stem] or page.stem}"
        resources = {
            "metadata": {"name": page.stem},
            "drdd_nav_css": NAV_CSS,
            "drdd_nav_top": _nav(pages, i, titles, "top"),
            "drdd_nav_bottom": _nav(pages, i, titles, "bottom"),
        }
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        page.with_suffix(".html").write_text(body, encoding="utf-8")
    rows = [
        dict(
            infos[p.stem],
            name=p.stem,
            number=p.stem[:2],
            page=f"{p.stem}.html",
            run=runs.get(p.stem),
        )
        for p in pages
    ]
    index = out / "index.html"
    index.write_text(_index_html(rows), encoding="utf-8")
    return index
