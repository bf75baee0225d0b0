"""Refresh docs/screenshots/: each main page of the residents' catalogue, of a resident's "my page" and of the
circulation desk, at desktop and at phone width, taken in Debian's headless Chromium from a system started for
the run with the demo data (``python -m shiori run``, SQLite, a throwaway virtual host; removed at the end). The
script lends and holds a few demo copies for an invented resident through the API first, so that the pages show
something.

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


PIN = "4827"
RESIDENT = {"name": "見本 さくら", "name_kana": "ミホン サクラ", "birth_date": "1992-03-03", "sex": "female",
            "address": "岐阜県海津市海津町高須515", "phone": "0584-00-0099", "home_library": "main", "category": "adult",
            "pin": PIN}


class Scene:
    """What the signed-in pages show: a resident with two loans and a hold, and a returned copy someone holds."""

    def __init__(self, base_url, password):
        self.api = requests.Session()
        token = self.api.post(f"{base_url}/api/v1/auth/token", timeout=30,
                              json={"username": "admin", "password": password}).json()["access_token"]
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url
        self.resident = self.call("POST", "/api/v1/patrons", RESIDENT)
        other = self.call("POST", "/api/v1/patrons", {**RESIDENT, "name": "見本 ひかる", "name_kana": "ミホン ヒカル",
                                                      "phone": "0584-00-0098", "pin": None})
        copies = [self.call("GET", f"/api/v1/items/K{number:08d}") for number in (1, 4, 7, 10)]
        for copy in copies[:2]:
            self.lend(self.resident, copy)
        self.lend(other, copies[2])
        self.call("POST", "/api/v1/holds", {"work_id": copies[2]["work_id"], "pickup_library": "main",
                                            "card_number": self.resident["card_number"]})
        self.lend(other, copies[3])
        self.call("POST", "/api/v1/holds", {"work_id": copies[3]["work_id"], "pickup_library": "main",
                                            "card_number": self.resident["card_number"]})
        self.held_copy = copies[3]["barcode"]  # to check in at the desk: it goes to the hold shelf
        self.work_id = copies[2]["work_id"]

    def call(self, method, path, body=None):
        answer = self.api.request(method, self.base_url + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def lend(self, patron, copy):
        self.call("POST", "/api/v1/checkouts", {"card_number": patron["card_number"], "item_barcode": copy["barcode"],
                                                "library": copy["library"]})


def signed_in_pages(browser, opac_url, base_url, password, scene):
    """(name, take) of the resident's and the desk's pages, each take opening its page in ``browser``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def log_in_as_resident():
        browser.get(opac_url + "/login")
        browser.find_element(By.ID, "card_number").send_keys(scene.resident["card_number"])
        browser.find_element(By.ID, "pin").send_keys(PIN, Keys.ENTER)

    def log_in_at_the_desk():
        browser.get(base_url + "/desk/login")
        browser.find_element(By.ID, "username").send_keys("admin")
        browser.find_element(By.ID, "password").send_keys(password, Keys.ENTER)

    def patron_at_the_desk():
        browser.get(base_url + "/desk")
        browser.find_element(By.ID, "card_number").send_keys(scene.resident["card_number"], Keys.ENTER)

    def hold_shelf_check_in():
        browser.get(base_url + "/desk/checkin")
        browser.find_element(By.ID, "item_barcode").send_keys(scene.held_copy, Keys.ENTER)

    return [
        ("opac-login", lambda: browser.get(opac_url + "/login")),
        ("opac-my-page", log_in_as_resident),
        ("opac-work-signed-in", lambda: browser.get(f"{opac_url}/works/{scene.work_id}")),
        ("desk-login", lambda: browser.get(base_url + "/desk/login")),
        ("desk-home", log_in_at_the_desk),
        ("desk-patron", patron_at_the_desk),
        ("desk-checkin-hold-shelf", hold_shelf_check_in),
        ("desk-register", lambda: browser.get(base_url + "/desk/register")),
        ("desk-card", lambda: browser.get(f"{base_url}/desk/cards/{scene.resident['id']}")),
        ("desk-hold-shelf", lambda: browser.get(base_url + "/desk/lists/hold-shelf")),
        ("desk-admin-loan-rules", lambda: browser.get(base_url + "/desk/admin/loan-rules")),
    ]


def take(browser, size, target):
    browser.set_window_size(*size)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(size[0], max(size[1], min(height, 3000)))
    browser.save_screenshot(str(target))
    say(f"{target.relative_to(REPO)}")


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
        base_url = under_test.start()
        password = under_test.system.password
        opac_url = f"http://127.0.0.1:{opac_port}"
        FOLDER.mkdir(parents=True, exist_ok=True)
        scene = Scene(base_url, password)
        for width_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            browser = open_browser(chromium, size)
            try:
                for name, path in pages(opac_url):
                    browser.get(opac_url + path)
                    take(browser, size, FOLDER / f"{name}-{width_name}.png")
                for name, opening in signed_in_pages(browser, opac_url, base_url, password, scene):
                    opening()
                    take(browser, size, FOLDER / f"{name}-{width_name}.png")
            finally:
                browser.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
