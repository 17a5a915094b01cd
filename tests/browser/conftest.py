"""Fixtures of the browser tests: one headless Chromium for the whole session (skipped without one)."""
import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, missing, skip_or_fail


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by playwright; skips (or fails when SNNLAB_BROWSER_REQUIRED=1) without them."""
    reason = missing()
    if reason:
        skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
