"""Desk benchmark: a check-out at the circulation desk as the librarian sees it, from the scan to the feedback on
the screen, with one desk.

    .venv/bin/python benchmarks/desk.py [--scans 100] [--database sqlite|postgresql]

Starts the whole system (``python -m shiori run``) through benchmarks/harness.py as every benchmark does, sets
up a library, a patron and copies through the API, then drives Debian's headless Chromium (tests/browsers.py)
through the desk: log in, scan the card, then scan each copy as a scanner does (the number and Enter). For each
scan it reports, from the browser's own Navigation Timing of the page the form leads to, the time from the
submission to the response's end and to the page being shown (``loadEventEnd``), and, from this process, the
time from the keys sent to the feedback being readable on the page. Everything it starts is stopped and removed
at the end. Only 127.0.0.1 is used. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO), str(REPO / "tests")]

from browsers import chromium_and_driver, open_browser  # noqa: E402
from figures import latency_summary  # noqa: E402
from harness import (  # noqa: E402
    LOCALHOST, RESULTS_DIR, Api, Broker, Stop, SystemUnderTest, add_broker_arguments, check_broker_arguments,
    ended_early, login, say, stop_main_on_signals, write_report,
)

LIBRARY = "bench-desk"
# Of the page a scan leads to: the form's submission to the response's last byte, and to the page's load.
NAVIGATION = ("const [entry] = performance.getEntriesByType('navigation');"
              "return [entry.responseEnd, entry.loadEventEnd];")


def set_up(api, scans):
    api.expect(api.post("/api/v1/libraries", {"code": LIBRARY, "name": "ベンチ カウンター図書館", "kind": "main"}), 201)
    patron = api.expect(api.post("/api/v1/patrons", {
        "name": "ベンチ 利用者", "name_kana": "ベンチ リヨウシャ", "birth_date": "1990-01-01",
        "address": "岐阜県海津市海津町高須515", "phone": "0584-11-2222", "home_library": LIBRARY, "category": "adult",
    }), 201)
    # One loan rule that lets one patron borrow every copy of the run.
    api.expect(api.post("/api/v1/loan-policies", {"library": LIBRARY, "loan_days": 14, "max_items": scans + 1,
                                                  "renewals": 1, "max_holds": 5}), 201)
    barcodes = []
    for number in range(scans):
        work = api.expect(api.post("/api/v1/works", {"title": f"カウンターの本 {number}", "publisher": "ベンチ出版"}), 201)
        barcode = f"DESK-{number:05d}"
        api.expect(api.post("/api/v1/items", {"barcode": barcode, "work_id": work["id"], "library": LIBRARY}), 201)
        barcodes.append(barcode)
    return patron["card_number"], barcodes


def scan_everything(browser, base_url, password, card_number, barcodes, stopping):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    browser.get(base_url + "/desk/login")
    Select(browser.find_element(By.ID, "library")).select_by_value(LIBRARY)
    browser.find_element(By.ID, "username").send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(password, Keys.ENTER)
    wait_for(lambda: browser.find_elements(By.ID, "card_number"))
    browser.find_element(By.ID, "card_number").send_keys(card_number, Keys.ENTER)
    wait_for(lambda: browser.find_elements(By.ID, "item_barcode"))
    responses, shown, seen = [], [], []
    for number, barcode in enumerate(barcodes):
        if stopping.is_set():
            raise Stop("stopping")
        began = time.perf_counter()
        browser.switch_to.active_element.send_keys(barcode, Keys.ENTER)
        wait_for(lambda: f"カウンターの本 {number}（" in feedback_text(browser, By))
        seen.append(time.perf_counter() - began)
        response_end, load_end = browser.execute_script(NAVIGATION)
        responses.append(response_end / 1000)
        shown.append(load_end / 1000)
    return {"response_end": latency_summary(responses), "page_shown": latency_summary(shown),
            "feedback_seen_by_driver": latency_summary(seen)}


def feedback_text(browser, by):
    found = browser.find_elements(by.CSS_SELECTOR, ".feedback .done")
    try:
        return found[0].text if found else ""
    except Exception:  # noqa: BLE001 - the page was replaced while being read
        return ""


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Stop("the desk did not answer in time")
        time.sleep(0.002)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=100, help="copies checked out one after another (default 100)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results (default benchmarks/results/desk-<database>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory and databases")
    args = parser.parse_args(argv)
    check_broker_arguments(args)
    if not 1 <= args.scans <= 10_000:
        parser.error("--scans: 1 to 10000")
    if None in chromium_and_driver():
        parser.error("needs chromium and chromedriver (apt-get install --no-install-recommends chromium "
                     "chromium-driver fonts-noto-cjk)")
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()
    under_test = SystemUnderTest(args.database, Broker(args.broker_url, args.broker_admin_url),
                                 keep_data=args.keep_data, postgres={"host": args.pg_host, "port": args.pg_port},
                                 prefix="shiori-bench-desk-")
    report = {"benchmark": "desk", "database": args.database, "scans": args.scans, "cpus": os.cpu_count(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "python": platform.python_version(), "platform": platform.platform()}
    exit_code, browser = 0, None
    try:
        base_url = under_test.start()
        password = under_test.system.password
        card_number, barcodes = set_up(Api(base_url, login(base_url, password)), args.scans)
        say(f"system up at {base_url}; {args.scans} copies for one patron; scanning ...")
        browser = open_browser(chromium_and_driver())
        report["checkout"] = scan_everything(browser, base_url, password, card_number, barcodes, stopping)
        for name, summary in report["checkout"].items():
            say(f"  {name:<24} p50 {summary['p50_ms']} ms  p95 {summary['p95_ms']}  max {summary['max_ms']}  "
                f"({summary['count']} scans)")
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        if browser is not None:
            browser.quit()
        under_test.close()
    if report.get("checkout"):
        write_report(report, Path(args.output) if args.output else RESULTS_DIR / f"desk-{args.database}.json",
                     complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
