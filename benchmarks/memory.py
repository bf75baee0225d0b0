"""Resident memory of each process of a freshly started system: ``python -m shiori run`` (SQLite, a throwaway
virtual host) from this checkout or from ``--code`` (another source tree, to compare versions in one run), and
each service process's VmRSS (from /proc/<pid>/status) once it is running and has settled. Issue 12 asks for
these figures: the analyser (SudachiPy's dictionary) belongs in the catalogue's processes only.

    .venv/bin/python benchmarks/memory.py [--code /path/to/other/tree ...]
"""
from harness import (  # noqa: I001 - harness monkey-patches first
    REPO, Broker, SystemUnderTest, add_broker_arguments, check_broker_arguments, ended_early, say,
    stop_main_on_signals,
)

import argparse
import time
from pathlib import Path

SETTLE_SECONDS = 5  # the services' first timers and look-ups run just after start


def resident_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def measure(code, args):
    with SystemUnderTest("sqlite", Broker(args.broker_url, args.broker_admin_url), code=code) as under_test:
        under_test.start()
        time.sleep(SETTLE_SECONDS)
        figures = {name: resident_kib(pid) for name, pid in sorted(under_test.system.processes().items())
                   if name != "bench-client"}
    say(f"{code}: " + ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in figures.items() if kib))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, action="append", default=[],
                        help="another source tree to measure too (repeatable); this checkout is measured last")
    add_broker_arguments(parser)
    args = parser.parse_args()
    check_broker_arguments(args)
    stop_main_on_signals()
    trees = [*args.code, REPO]
    try:
        figures = {str(tree): measure(tree, args) for tree in trees}
    except BaseException as error:  # noqa: BLE001 - Stop included: the system is already cleaned up
        return ended_early(error)
    names = sorted({name for by_name in figures.values() for name in by_name})
    say(f"{'process':<14}" + "".join(f"{tree[-28:]:>30}" for tree in figures))
    for name in names:
        say(f"{name:<14}" + "".join(f"{(by_name.get(name) or 0) / 1024:>27.1f} MiB" for by_name in figures.values()))
    say(f"{'total':<14}" + "".join(f"{sum(filter(None, by_name.values())) / 1024:>27.1f} MiB"
                                   for by_name in figures.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
