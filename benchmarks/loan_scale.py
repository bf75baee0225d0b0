"""Check-out latency as a patron's loans and a work's holds grow: 0, 50 and 500 current loans, a work with
0 and 1,000 holds, side by side.

    .venv/bin/python benchmarks/loan_scale.py [--database sqlite|postgresql] [--checkouts 100]

Starts the whole system (``python -m shiori run``) through benchmarks/harness.py (own data directory,
own broker vhost, throwaway PostgreSQL databases), sets up through the HTTP API a loan rule that lets a
patron hold 1,000 items, patrons with 0, 50 and 500 loans and a work with 1,000 patrons waiting for it,
then times sequential check-outs through the gateway:

- ``loans-N``: the patron with N loans borrows a copy (timed) and returns it (not timed), ``--checkouts``
  times: every check-out counts the patron's loans, looks for overdue ones and for their holds;
- ``holds-N``: a patron with no loans borrows, one after another, ``--checkouts`` copies of a work that N
  other patrons wait for (the copies are not theirs: none was checked in for a hold).

Koha was seen taking seconds for patrons with hundreds of loans; the target is flat: each case within 2x
of its empty case. Everything it starts is removed at the end, also on Ctrl-C. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before requests or psycopg2 are imported

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from harness import (  # noqa: E402
    LOCALHOST, RESULTS_DIR, Api, Broker, Stop, SystemUnderTest, add_broker_arguments, check_broker_arguments, login,
    say, stop_main_on_signals, write_report,
)
from figures import latency_summary  # noqa: E402

LIBRARY = "bench"
LOAN_LEVELS = (0, 50, 500)
HOLD_LEVELS = (0, 1000)
WARM_UP = 30


class Scale:
    """The patrons, works and copies of the cases, made through the HTTP API."""

    def __init__(self, api):
        self.api = api
        self.serial = 0

    def patron(self):
        self.serial += 1
        return self.api.expect(self.api.post("/api/v1/patrons", {
            "name": f"ベンチ 利用者{self.serial}", "name_kana": "ベンチ リヨウシャ", "birth_date": "1990-01-01",
            "address": "岐阜県海津市海津町高須515", "phone": "0584-11-2222", "home_library": LIBRARY,
            "category": "adult"}), 201)

    def copies(self, count):
        """A new work and ``count`` copies of it: (work id, barcodes)."""
        self.serial += 1
        work = self.api.expect(self.api.post("/api/v1/works", {"title": f"規模の本 {self.serial}"}), 201)
        barcodes = [f"SCALE-{self.serial}-{n}" for n in range(count)]
        for barcode in barcodes:
            self.api.expect(self.api.post("/api/v1/items", {"barcode": barcode, "work_id": work["id"],
                                                            "library": LIBRARY}), 201)
        return work["id"], barcodes

    def lend(self, card_number, barcode):
        return self.api.expect(self.api.post("/api/v1/checkouts", {
            "card_number": card_number, "item_barcode": barcode, "library": LIBRARY}), 201)

    def give_back(self, barcode):
        self.api.expect(self.api.post("/api/v1/checkins", {"item_barcode": barcode, "library": LIBRARY}), 200)

    def timed_lend(self, card_number, barcode):
        began = time.perf_counter()
        self.lend(card_number, barcode)
        return time.perf_counter() - began


def loans_case(scale, loans, checkouts, stopping):
    patron = scale.patron()
    _work, held = scale.copies(loans)
    for barcode in held:
        scale.lend(patron["card_number"], barcode)
    _work, (probe,) = scale.copies(1)
    durations = []
    for _ in range(checkouts):
        if stopping.is_set():
            raise Stop("stopping")
        durations.append(scale.timed_lend(patron["card_number"], probe))
        scale.give_back(probe)
    return durations


def holds_case(scale, holds, checkouts, stopping):
    work_id, barcodes = scale.copies(checkouts)
    for _ in range(holds):
        waiting = scale.patron()
        scale.api.expect(scale.api.post("/api/v1/holds", {
            "work_id": work_id, "pickup_library": LIBRARY, "card_number": waiting["card_number"]}), 201)
    borrower = scale.patron()
    durations = []
    for barcode in barcodes:
        if stopping.is_set():
            raise Stop("stopping")
        durations.append(scale.timed_lend(borrower["card_number"], barcode))
    return durations


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--checkouts", type=int, default=100, help="timed check-outs per case (default 100)")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results (default benchmarks/results/loan-scale-<database>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory and databases")
    args = parser.parse_args(argv)
    check_broker_arguments(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()
    broker = Broker(args.broker_url, args.broker_admin_url)
    under_test = SystemUnderTest(args.database, broker, keep_data=args.keep_data,
                                 postgres={"host": args.pg_host, "port": args.pg_port})
    report = {"benchmark": "loan-scale", "database": args.database, "checkouts_per_case": args.checkouts,
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "python": platform.python_version(), "cases": {}}
    output = Path(args.output) if args.output else RESULTS_DIR / f"loan-scale-{args.database}.json"
    complete = False
    try:
        base_url = under_test.start()
        say(f"system up at {base_url} ({args.database}, virtual host {broker.vhost})")
        api = Api(base_url, login(base_url, under_test.system.password))
        api.expect(api.post("/api/v1/libraries", {"code": LIBRARY, "name": "ベンチマーク図書館", "kind": "main"}), 201)
        api.expect(api.post("/api/v1/loan-policies", {"loan_days": 14, "max_items": 1000, "renewals": 1,
                                                      "max_holds": 10}), 201)
        scale = Scale(api)
        loans_case(scale, 0, WARM_UP, stopping)  # the first calls open connections and fill caches: not a case
        cases = [(f"loans-{n}", loans_case, n) for n in LOAN_LEVELS] + \
                [(f"holds-{n}", holds_case, n) for n in HOLD_LEVELS]
        for name, case, size in cases:
            began = time.monotonic()
            durations = case(scale, size, args.checkouts, stopping)
            report["cases"][name] = latency_summary(durations)
            figures = report["cases"][name]
            say(f"{name:10} check-out p50 {figures['p50_ms']:7.2f} ms  p95 {figures['p95_ms']:7.2f}  "
                f"p99 {figures['p99_ms']:7.2f}  max {figures['max_ms']:7.2f}  "
                f"({round(time.monotonic() - began)} s with its setup)")
        complete = True
        say("\ncheck-out through the gateway, sequential (ms):")
        say(f"{'case':10} {'p50':>8} {'p95':>8} {'p95 / empty':>12}")
        for name, figures in report["cases"].items():
            empty = report["cases"][name.split("-")[0] + "-0"]
            say(f"{name:10} {figures['p50_ms']:8.2f} {figures['p95_ms']:8.2f} "
                f"{figures['p95_ms'] / empty['p95_ms']:11.2f}x")
    except Stop:
        say("stopped")
    finally:
        under_test.close()
        write_report(report, output, complete)
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
