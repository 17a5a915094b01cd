"""What the browser tests share: finding Chromium, starting a server, and reading and driving a widget app.

A widget app (`snnlab.widgets.*_app`) renders as a `.widget-vbox` holding its controls and a plotly
figure (`.js-plotly-plot`). `snapshot` reads the figure's data as plotly.js holds it (`_fullData`,
the traces after plotly decoded binary arrays) and the titles of its layout; `move` sets one control,
found by its description label, the way a user does (typing into a slider's readout, picking a
dropdown option, clicking a toggle button); `wait_for_change` waits until the figure's data differ.
"""
import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("SNNLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TOKEN = "snnlab-browser-test"
TIMEOUT_MS = 180_000  # each wait for a server, a kernel or a redraw
RUN_TIMEOUT_MS = 420_000  # running every cell of one notebook up to its widget (warm caches)

_SNAPSHOT = """root => Array.from(root.querySelectorAll('.js-plotly-plot')).map(gd => {
    const list = v => (v === undefined || v === null) ? [] : (typeof v === 'object' ? Array.from(v) : [v]);
    const title = t => (t && typeof t === 'object') ? (t.text || '') : (t || '');
    const layout = gd._fullLayout || {};
    const axes = {};
    for (const key of Object.keys(layout)) {
        if (/^[xy]axis[0-9]*$/.test(key)) axes[key] = title(layout[key].title);
    }
    return {title: title(layout.title), axes: axes, traces: (gd._fullData || []).map(t => ({
        name: t.name || '', type: t.type, mode: t.mode || '', visible: t.visible,
        xaxis: t.xaxis || '', yaxis: t.yaxis || '', x: list(t.x), y: list(t.y), text: list(t.text)}))};
})"""


def missing() -> str:
    """Why the browser tests cannot run here, or "" if they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SNNLAB_CHROMIUM)"
    return ""


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when SNNLAB_BROWSER_REQUIRED=1 (CI), where a skip would hide a missing browser."""
    if os.environ.get("SNNLAB_BROWSER_REQUIRED") == "1":
        pytest.fail(f"SNNLAB_BROWSER_REQUIRED=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp: Path) -> dict:
    """The environment of a server and its kernels: this checkout first on PYTHONPATH, private Jupyter folders."""
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    # no "news" pop-up over the notebook
    (config / "labconfig" / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    return dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@contextlib.contextmanager
def serve(command: list, probe: str, log: Path, cwd: Path, env: dict):
    """Run a server, wait until it answers `probe` (a URL; any HTTP status will do), yield, stop the server."""
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            if server.poll() is not None:
                pytest.fail(f"{command[2]} exited with {server.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=2):
                    break
            except urllib.error.HTTPError:  # it answers (Voilà redirects what it does not serve)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{command[2]} did not answer in {TIMEOUT_MS / 1000:.0f} s:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def find_app(page, control: str):
    """The widget app (the outermost `.widget-vbox` with a plotly figure) that holds the control `control`."""
    return page.locator(".widget-vbox").filter(has=page.locator(".js-plotly-plot")).filter(has_text=control).first


def snapshot(app) -> list:
    """Every figure of the app: [{"title", "axes": {axis: title}, "traces": [{"name", "x", "y", "text", ...}]}]."""
    return app.evaluate(_SNAPSHOT)


def move(page, app, control: str, value) -> None:
    """Set the control whose description label starts with or contains `control` to `value`, as a user would."""
    label = page.locator(".widget-label", has_text=control)
    slider = app.locator(".widget-slider").filter(has=label)
    if slider.count():
        slider.first.locator(".widget-readout").click()
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
        page.keyboard.press("Enter")
        return
    dropdown = app.locator(".widget-dropdown").filter(has=label)
    if dropdown.count():
        dropdown.first.locator("select").select_option(label=str(value))
        return
    toggles = app.locator(".widget-toggle-buttons").filter(has=label)
    if toggles.count():
        toggles.first.locator("button", has_text=str(value)).first.click()
        return
    raise AssertionError(f"no slider, dropdown or toggle buttons labelled {control!r} in the widget")


def wait_for_change(app, before: list, timeout_s: float = TIMEOUT_MS / 1000) -> list:
    """The app's figures once their data differ from `before` and have stopped changing for 0.5 s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = snapshot(app)
        if now != before:
            time.sleep(0.5)
            settled = snapshot(app)
            if settled == now:
                return now
        else:
            time.sleep(0.25)
    raise AssertionError(f"the figure did not change within {timeout_s:.0f} s of moving the control")


def trace(figure: dict, name: str) -> dict:
    """The first trace of `figure` (a snapshot item) called `name`."""
    for t in figure["traces"]:
        if t["name"] == name:
            return t
    raise AssertionError(f"no trace {name!r} in the figure; it has {[t['name'] for t in figure['traces']]}")
