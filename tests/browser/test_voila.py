"""Browser test: notebooks served as apps by Voilà (`voila notebooks/<nb>.ipynb`) render and respond.

Per case of `widget_cases.VOILA_CASES`: start Voilà on a copy of the notebook (a free localhost port,
a known token), load the page in the session's headless Chromium, wait for the widget (Voilà runs
every cell first), move one control, wait for the figure to change and check the new data against the
library (`Case.check`), as the JupyterLab test does. Skipped without voila, playwright or Chromium
(failed instead when SNNLAB_BROWSER_REQUIRED=1), and for a notebook not in this checkout.
"""
import importlib.util
import shutil
import sys

import pytest
from browser_kit import (NOTEBOOKS, RUN_TIMEOUT_MS, SCREENSHOTS, TIMEOUT_MS, TOKEN, find_app, free_port, move, serve,
                          server_env, skip_or_fail, snapshot, wait_for_change)
from widget_cases import VOILA_CASES, knobs

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("case", VOILA_CASES, ids=str)
def test_voila_app_renders_and_follows_its_control(case, browser, tmp_path):
    if importlib.util.find_spec("voila") is None:
        skip_or_fail("voila is not installed (pip install voila)")
    if not (NOTEBOOKS / case.notebook).is_file():
        pytest.skip(f"notebooks/{case.notebook} does not exist in this checkout")
    shutil.copy(NOTEBOOKS / case.notebook, tmp_path / case.notebook)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "voila", case.notebook, f"--port={port}", "--Voila.ip=127.0.0.1", "--no-browser",
               f"--token={TOKEN}", f"--VoilaExecutor.timeout={RUN_TIMEOUT_MS // 1000}", "--show_tracebacks=True"]
    stem = f"voila_{case.notebook[:2]}"
    with serve(command, f"{url}/api/status?token={TOKEN}", tmp_path / "voila.log", tmp_path, server_env(tmp_path)):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/?token={TOKEN}", timeout=RUN_TIMEOUT_MS)
            app = find_app(page, case.control)
            app.wait_for(timeout=RUN_TIMEOUT_MS)
            page.wait_for_function("root => Array.from(root.querySelectorAll('.js-plotly-plot'))"
                                   ".every(gd => gd._fullData && gd._fullData.length > 0)", arg=app.element_handle())
            before = snapshot(app)
            page.screenshot(path=str(SCREENSHOTS / f"{stem}_before.png"))
            move(page, app, case.control, case.value)
            after = wait_for_change(app, before)
            page.screenshot(path=str(SCREENSHOTS / f"{stem}_after.png"))
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / f"{stem}_failure.png"))
            raise
        finally:
            page.close()
    case.check(knobs(NOTEBOOKS / case.notebook), before, after)
