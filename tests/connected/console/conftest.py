"""One headless Chromium for the console's browser tests (Debian's, driven by Playwright),
and a folder for their screenshots, printed so that a person can look at each step."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

# Playwright's own browser download cannot be used here: the system's Chromium is driven.
CHROMIUM = os.environ.get("AOB_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    assert Path(CHROMIUM).is_file(), (
        f"the console's browser tests need Chromium at {CHROMIUM}: `make test` installs it "
        "(Debian: apt-get install chromium), or set AOB_TEST_CHROMIUM"
    )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            # As root (CI) Chromium needs --no-sandbox; /dev/shm may be small in containers.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield b
        await b.close()


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="aob-console-screenshots-"))
    with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nconsole screenshots: {folder}")
    return folder
