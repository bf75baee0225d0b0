"""Refresh docs/screenshots/: each main page of the residents' catalogue at desktop and at phone width, taken in
Debian's headless Chromium from a system started for the run with the demo data (``python -m shiori run``,
SQLite, a throwaway virtual host; removed at the end).

    .venv/bin/python scripts/screenshots.py
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests")]

from harness import Broker, SystemUnderTest, add_broker_arguments, check_broker_arguments, free_port, say  # noqa: E402

import argparse  # noqa: E402

import requests  # noqa: E402

from browsers import DESKTOP, PHONE, chromium_and_driver, open_browser  # noqa: E402

FOLDER = REPO / "docs" / "screenshots"
QUERY = "夏目漱石"


def pages(opac_url):
    """(name, path) of each main page: the front page, a search, and the first work it finds."""
    found = requests.get(f"{opac_url}/api/v1/search", params={"q": QUERY}, timeout=30).json()["items"]
    return [("opac-home", "/"), ("opac-search", f"/search?q={QUERY}"),
            ("opac-work", f"/works/{found[0]['id']}"), ("opac-home-en", "/?lang=en")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_broker_arguments(parser)
    args = parser.parse_args()
    check_broker_arguments(args)
    chromium = chromium_and_driver()
    if None in chromium:
        parser.error("needs chromium and chromedriver (apt-get install --no-install-recommends chromium "
                     "chromium-driver fonts-noto-cjk)")
    opac_port = free_port()
    environ = {"SHIORI_DEMO": "1", "SHIORI_OPAC_PORT": str(opac_port)}
    with SystemUnderTest("sqlite", Broker(args.broker_url, args.broker_admin_url), environ=environ,
                         prefix="shiori-screenshots-") as under_test:
        under_test.start()
        opac_url = f"http://127.0.0.1:{opac_port}"
        FOLDER.mkdir(parents=True, exist_ok=True)
        for width_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            browser = open_browser(chromium, size)
            try:
                for name, path in pages(opac_url):
                    browser.get(opac_url + path)
                    browser.set_window_size(*size)
                    height = browser.execute_script("return document.body.scrollHeight")
                    browser.set_window_size(size[0], max(size[1], min(height, 3000)))
                    target = FOLDER / f"{name}-{width_name}.png"
                    browser.save_screenshot(str(target))
                    say(f"{target.relative_to(REPO)}")
            finally:
                browser.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
