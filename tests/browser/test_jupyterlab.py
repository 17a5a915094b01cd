"""Browser test: notebook 00 in JupyterLab, in headless Chromium; its widget renders and responds.

Starts its own JupyterLab (a free localhost port, a known token, a temporary root holding a copy of
the notebook), runs all cells from the Run menu, checks that the sliders and the plotly figure of
`widgets.neuron_app` render, types a new T into the slider's readout, and waits for the raster to
gain markers. Screenshots go to tests/browser/screenshots/ (ignored by git).

Needs `pip install playwright` and Debian's `chromium` (do not run `playwright install`). Without
them the test is skipped, unless SNNLAB_BROWSER_REQUIRED=1, when it fails instead.
"""
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

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "00_spiking_neurons.ipynb"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("SNNLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TOKEN = "snnlab-browser-test"
TIMEOUT_MS = 180_000  # for each wait in the browser: server start, kernel start, running every cell


def _missing() -> str:
    """Why the test cannot run here, or "" if it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SNNLAB_CHROMIUM)"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a copy of notebook 00; yields its base URL and stops it afterwards."""
    reason = _missing()
    if reason:
        if os.environ.get("SNNLAB_BROWSER_REQUIRED") == "1":
            pytest.fail(f"SNNLAB_BROWSER_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    root, config = tmp_path / "root", tmp_path / "config"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    (config / "labconfig").mkdir(parents=True)  # no "news" pop-up over the screenshot
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", f"--port={port}", "--ip=127.0.0.1", "--allow-root", "--no-browser",
         "--ServerApp.open_browser=False", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(url, server, tmp_path / "server.log")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {TIMEOUT_MS / 1000:.0f} s:\n{log.read_text()[-2000:]}")


def _accept_kernel_dialog(page) -> None:
    """Accept the "Select Kernel" dialog that a slow server may raise, if it appears within 15 s."""
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        accept.wait_for(timeout=15_000)
    except Exception:  # playwright's TimeoutError: no dialog, the kernel starts by itself
        return
    accept.click()


def _expected_spikes(timesteps: int) -> int:
    """Spikes of the raster's 16 IF neurons (θ = 1, V[0] = 0, X = 0, 0.1, …, 1.5): Σ min(T, floor(T·X))."""
    return sum(min(timesteps, (timesteps * tenths) // 10) for tenths in range(16))


def _raster_markers(page) -> int:
    """Markers of the widget figure's spike raster (the trace drawn on the subplot x3/y3)."""
    return page.evaluate("""() => {
        const plot = document.querySelector('.widget-vbox .js-plotly-plot');
        const layer = plot && plot.querySelector('.subplot.x3y3 .scatterlayer');
        return layer ? layer.querySelectorAll('path.point').length : -1;
    }""")


def test_notebook_00_widget_renders_and_follows_the_t_slider(jupyterlab):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            _accept_kernel_dialog(page)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the kernel has started
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            app = page.locator(".widget-vbox").filter(has=page.locator(".js-plotly-plot")).first
            app.wait_for()
            slider = app.locator(".widget-slider", has_text="time steps T")
            slider.locator(".noUi-handle").wait_for()
            assert app.locator(".widget-slider").count() == 5  # X, θ, λ, V[0], T
            page.wait_for_function("() => document.querySelectorAll("
                                   "'.widget-vbox .js-plotly-plot .subplot.x3y3 path.point').length > 0")
            before = _raster_markers(page)
            app.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "00_neuron_app_T8.png"))

            readout = slider.locator(".widget-readout")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("24")
            page.keyboard.press("Enter")
            page.wait_for_function(f"() => document.querySelectorAll("
                                   f"'.widget-vbox .js-plotly-plot .subplot.x3y3 path.point').length > {before}")
            after = _raster_markers(page)
            page.wait_for_timeout(500)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(SCREENSHOTS / "00_neuron_app_T24.png"))
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "00_failure.png"))  # what the page showed when it failed
            raise
        finally:
            browser.close()
    assert (before, after) == (_expected_spikes(8), _expected_spikes(24))
