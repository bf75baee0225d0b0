"""A real browser for the pages: Debian's Chromium, headless, driven by Selenium through Debian's chromedriver
(``/usr/bin/chromium`` and ``/usr/bin/chromedriver``, or SHIORI_CHROMIUM and SHIORI_CHROMEDRIVER). Selenium speaks
plain HTTP to the driver, which suits a test process that eventlet patches. ``.ci/run`` installs Chromium, its
driver and the Japanese fonts where they are missing; on a machine without them the browser tests are skipped,
except in CI (CI=true), where their absence is a failure. A failing test leaves a screenshot of its page in
tests/browser/screenshots/."""
import os
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def installed(variable, *names):
    return os.environ.get(variable) or next(filter(None, map(shutil.which, names)), None)


@pytest.fixture(scope="session")
def chromium():
    binary = installed("SHIORI_CHROMIUM", "chromium", "chromium-browser")
    driver = installed("SHIORI_CHROMEDRIVER", "chromedriver")
    if binary is None or driver is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Chromium or chromedriver: .ci/run installs chromium, chromium-driver, fonts-noto-cjk")
        pytest.skip("no Chromium here (apt-get install --no-install-recommends chromium chromium-driver "
                    "fonts-noto-cjk)")
    return binary, driver


def open_browser(chromium, width=1280, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # Chromium's own sandbox needs user namespaces that a root process in a container seldom has.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--lang=ja-JP"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    browser.implicitly_wait(5)
    return browser


@pytest.fixture
def browser(chromium, request):
    opened = open_browser(chromium)
    yield opened
    if getattr(request.node, "failed", False):
        SCREENSHOTS.mkdir(exist_ok=True)
        opened.save_screenshot(str(SCREENSHOTS / f"{request.node.name}.png"))
    opened.quit()


@pytest.fixture
def phone(chromium, request):
    opened = open_browser(chromium, width=360, height=740)
    yield opened
    if getattr(request.node, "failed", False):
        SCREENSHOTS.mkdir(exist_ok=True)
        opened.save_screenshot(str(SCREENSHOTS / f"{request.node.name}-phone.png"))
    opened.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True
    return report
