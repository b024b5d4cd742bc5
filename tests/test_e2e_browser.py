"""End to end in a real browser: JupyterLab + headless Chromium (Debian's ``chromium``) driven by
Playwright. Opens notebook 03, runs every cell, moves a slider of the path-independence lab and
checks that the figure changed. Screenshots go to ``test-artifacts/``.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (``.ci/run`` installs both). Where
they are missing the test is skipped, except when ``DRDD_EDU_REQUIRE_BROWSER=1`` (set by CI),
where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = ROOT / "notebooks" / "03_schedules_paths.py"
TOKEN = "drdd-edu-e2e"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("DRDD_EDU_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    import jupytext

    work = tmp_path_factory.mktemp("lab")
    nb = jupytext.read(NOTEBOOK)
    # A plain .ipynb for the browser: without the jupytext pairing JupyterLab opens it directly.
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    jupytext.write(nb, work / "03_schedules_paths.ipynb", fmt="ipynb")
    port = _free_port()
    env = dict(
        os.environ, DRDD_EDU_SMOKE="1", DRDD_EDU_FIGURES=str(ARTIFACTS / "figures"), MPLBACKEND=""
    )
    env.pop("MPLBACKEND")
    # Fresh, empty user settings so the lab behaves the same on every machine (a developer's own
    # JupyterLab settings, e.g. "always start the preferred kernel", must not change the test).
    env["JUPYTERLAB_SETTINGS_DIR"] = str(work / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(work / "lab-workspaces")
    # ...except two: start the notebook's kernel without a "Select Kernel" dialog, and no news toast.
    settings = {
        "notebook-extension/tracker": {"autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false"},
    }
    for name, values in settings.items():
        path = work / "lab-settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log = open(work / "jupyter.log", "w")  # noqa: SIM115 - closed in the finaliser
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={work}",
            "--allow-root",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited: {(work / 'jupyter.log').read_text()}"
                ) from None
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError(f"jupyter lab did not start: {(work / 'jupyter.log').read_text()}")
    yield url, work
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _output_images(page):
    """The src of every image inside widget outputs (the lab's figure)."""
    return page.eval_on_selector_all(".jp-OutputArea-output img", "els => els.map(e => e.src)")


def _wait_for_one_kernel(url: str, settle_s: float = 4.0, timeout_s: float = 120.0) -> None:
    """Wait until the server has had exactly one kernel, the same one, for ``settle_s`` seconds.

    A fresh JupyterLab can start a kernel for the notebook and then replace it (kernel preference
    resolution); cells sent to the first one are lost when it shuts down."""
    deadline = time.time() + timeout_s
    seen, since = None, time.time()
    while time.time() < deadline:
        with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=5) as response:
            kernels = json.load(response)
        ids = tuple(sorted(k["id"] for k in kernels if k.get("execution_state") != "starting"))
        if ids != seen:
            seen, since = ids, time.time()
        elif len(ids) == 1 and time.time() - since >= settle_s:
            return
        time.sleep(0.5)
    raise AssertionError(f"the notebook's kernel never settled: kernels {seen}")


def _run_all_cells(page) -> None:
    """Run → Run All Cells, until a cell actually starts. On a loaded machine the kernel can still
    be connecting when the indicator first reads idle, and that first request is then lost."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    started = (
        "() => Array.from(document.querySelectorAll('.jp-InputArea-prompt'))"
        ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    )
    for _ in range(4):
        page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
        page.click(
            "li.lm-Menu-item[data-command='runmenu:run-all'], "
            "li.lm-Menu-item[data-command='notebook:run-all-cells']"
        )
        try:
            page.wait_for_function(started, timeout=45_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells never started a cell (is the kernel connected?)")


def test_notebook_03_runs_and_slider_updates_figure(lab_server):
    from playwright.sync_api import sync_playwright

    url, work = lab_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/lab/tree/03_schedules_paths.ipynb?token={TOKEN}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="attached")
        # A fresh JupyterLab may ask which kernel to start ("Select Kernel"): accept the default.
        page.wait_for_selector(
            ".jp-Dialog, .jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached"
        )
        dialog = page.query_selector(".jp-Dialog")
        if dialog is not None:
            dialog.query_selector(".jp-Dialog-button.jp-mod-accept").click()
            page.wait_for_selector(".jp-Dialog", state="detached")
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached"
        )
        _wait_for_one_kernel(url)
        _run_all_cells(page)
        # wait until the kernel is idle again and the lab's widgets are on the page
        try:
            slider = page.wait_for_selector(
                ".widget-slider .noUi-handle, .widget-hslider .noUi-handle",
                state="visible",
                timeout=240_000,
            )
        except Exception as exc:  # leave evidence behind: a screenshot, the outputs, the log
            page.screenshot(path=str(ARTIFACTS / "e2e_notebook03_failure.png"), full_page=True)
            outputs = page.eval_on_selector_all(
                ".jp-OutputArea-output", "els => els.map(e => e.textContent.slice(0, 400))"
            )
            prompts = page.eval_on_selector_all(
                ".jp-InputArea-prompt", "els => els.map(e => e.textContent).join(' ')"
            )
            log = (work / "jupyter.log").read_text()[-3000:]
            raise AssertionError(
                f"the lab's slider never appeared: {exc}\nprompts: {prompts}\n"
                f"cell outputs: {outputs[-6:]}\n"
                f"jupyter log:\n{log}"
            ) from exc
        page.wait_for_function(
            "() => !Array.from(document.querySelectorAll('.jp-InputArea-prompt')).some(p => p.textContent.includes('*'))",
            timeout=300_000,
        )
        errors = page.eval_on_selector_all(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
            "els => els.map(e => e.textContent)",
        )
        tracebacks = [e for e in errors if "Traceback" in e or "Error" in e]
        assert not tracebacks, f"a cell failed in the browser: {tracebacks[:1]}"
        page.screenshot(path=str(ARTIFACTS / "e2e_notebook03_before.png"), full_page=False)
        before = _output_images(page)
        assert before, "the notebook shows figures"
        slider.scroll_into_view_if_needed()
        slider.focus()
        slider.press("ArrowRight")
        slider.press("ArrowRight")
        page.wait_for_function(
            "(old) => { const now = Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(e => e.src);"
            " return now.length > 0 && now.some(s => !old.includes(s)); }",
            arg=before,
            timeout=120_000,
        )
        page.screenshot(path=str(ARTIFACTS / "e2e_notebook03_after.png"), full_page=False)
        after = _output_images(page)
        assert any(src not in before for src in after), "moving the slider changed the figure"
        browser.close()
