"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver: for the browser tests
(tests/conftest.py) and the screenshots of docs/screenshots/ (scripts/screenshots.py). Selenium speaks plain
HTTP to the driver, which suits a process that eventlet patches."""
import os
import shutil

DESKTOP, PHONE = (1280, 900), (360, 740)


def installed(variable, *names):
    return os.environ.get(variable) or next(filter(None, map(shutil.which, names)), None)


def chromium_and_driver():
    """The paths of Chromium and chromedriver (SHIORI_CHROMIUM, SHIORI_CHROMEDRIVER, else the installed ones),
    None for one that is missing."""
    return (installed("SHIORI_CHROMIUM", "chromium", "chromium-browser"),
            installed("SHIORI_CHROMEDRIVER", "chromedriver"))


def open_browser(chromium, size=DESKTOP):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium
    width, height = size
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # Chromium's own sandbox needs user namespaces that a root process in a container seldom has.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--lang=ja-JP", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    browser.implicitly_wait(5)
    return browser
