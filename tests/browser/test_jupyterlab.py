"""Browser test: every notebook's "Try it" widget in JupyterLab, in headless Chromium, renders and responds.

One JupyterLab for the module (a free localhost port, a known token, a temporary root holding a copy of
the notebooks) and one Chromium for the session. Per notebook of `widget_cases.CASES`: open it in a
fresh workspace, run all cells from the Run menu, wait for the widget, read the figure's data from the
page, move one control, wait for the figure to change, and check the new data against the library
(`Case.check`); then shut the notebook's kernel down. Screenshots go to tests/browser/screenshots/
(ignored by git). With warm caches (SNNLAB_CACHE as the notebooks' run left it) this takes minutes.

Needs `pip install playwright` and Debian's `chromium` (do not run `playwright install`). Without
them the tests are skipped, unless SNNLAB_BROWSER_REQUIRED=1, when they fail instead.
"""
import json
import shutil
import sys
import urllib.request

import pytest
from browser_kit import (NOTEBOOKS, RUN_TIMEOUT_MS, SCREENSHOTS, TIMEOUT_MS, TOKEN, find_app, free_port, move, serve,
                          server_env, snapshot, wait_for_change)
from widget_cases import CASES, knobs

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def jupyterlab(browser, tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks; yields its base URL and stops it afterwards."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "jupyterlab", f"--port={port}", "--ip=127.0.0.1", "--allow-root", "--no-browser",
               "--ServerApp.open_browser=False", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}"]
    with serve(command, f"{url}/api/status?token={TOKEN}", tmp / "server.log", root, server_env(tmp)):
        yield url


def _api(url: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{url}{path}", method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def _shut_down_kernels(url: str) -> None:
    """Stop every kernel of the server, so the next notebook has the CPU to itself."""
    for kernel in _api(url, "/api/kernels"):
        _api(url, f"/api/kernels/{kernel['id']}", "DELETE")


def _wait_for_kernel(page) -> None:
    """Wait until the notebook's kernel is idle, accepting the "Select Kernel" dialog a slow server may raise."""
    idle = page.get_by_text("Python 3 (ipykernel) | Idle")
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    idle.or_(accept).first.wait_for()
    if accept.count():
        accept.first.click()
    idle.wait_for()


def _run_all(page, url: str, notebook: str) -> None:
    """Open `notebook` in a workspace of its own (nothing else restored) and run all its cells."""
    page.goto(f"{url}/lab/workspaces/{notebook[:2]}/tree/{notebook}?token={TOKEN}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    _wait_for_kernel(page)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_widget_renders_and_follows_its_control(case, browser, jupyterlab):
    if not (NOTEBOOKS / case.notebook).is_file():
        pytest.skip(f"notebooks/{case.notebook} does not exist in this checkout")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    stem = case.notebook[:2]
    try:
        page.set_default_timeout(TIMEOUT_MS)
        _run_all(page, jupyterlab, case.notebook)
        app = find_app(page, case.control)
        app.wait_for(timeout=RUN_TIMEOUT_MS)
        page.wait_for_function("root => Array.from(root.querySelectorAll('.js-plotly-plot'))"
                               ".every(gd => gd._fullData && gd._fullData.length > 0)", arg=app.element_handle())
        before = snapshot(app)
        app.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"{stem}_before.png"))
        move(page, app, case.control, case.value)
        after = wait_for_change(app, before)
        page.screenshot(path=str(SCREENSHOTS / f"{stem}_after.png"))
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / f"{stem}_failure.png"))  # what the page showed when it failed
        raise
    finally:
        page.close()
        _shut_down_kernels(jupyterlab)
    case.check(knobs(NOTEBOOKS / case.notebook), before, after)
