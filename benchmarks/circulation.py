"""Circulation benchmark: check-out + check-in throughput and latency through the HTTP gateway.

    .venv/bin/python benchmarks/circulation.py [--clients 1,5,20] [--seconds 10] [--database sqlite|postgresql]

Starts the whole system (``python -m shiori run``) in a temporary data directory on a free port, on a
RabbitMQ virtual host of its own that the launcher provisions (through the management API, as ``make run``
does), and, with ``--database postgresql``, on throwaway databases. Sets up a library, patrons and items through the HTTP API, then for each concurrency level runs
N clients that loop check-out/check-in on their own items for a bounded time. Also measures the floor of an
empty RPC with a signed caller context (a ``bench_echo`` service started in this process) and ``GET /health`` through the gateway.
Everything it starts is stopped and removed at the end, also on Ctrl-C and on errors. Only 127.0.0.1 is used.
See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

eventlet.monkey_patch()  # before nameko, kombu, requests or psycopg2 are imported

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from figures import latency_summary  # noqa: E402
from harness import (  # noqa: E402
    LOCALHOST, REQUEST_TIMEOUT, RESULTS_DIR, TENANT, Api, Broker, Stop, SystemUnderTest, add_broker_arguments,
    check_broker_arguments, cpu_seconds, ended_early, fmt, http_session, login, machine_cpu, say,
    stop_main_on_signals, write_report,
)
from shiori.broker import OPERATOR  # noqa: E402
from shiori.commands.calls import operator_rpc  # noqa: E402
from shiori.rpc import rpc  # noqa: E402

LIBRARY = "bench"
SETTLE_SECONDS = 30
EVENT_QUEUES = (
    "evt-loans-loan_created--catalog.on_loan_created",
    "evt-loans-loan_returned--catalog.on_loan_returned",
    "evt-loans-patron_card_used--patrons.on_card_used",
)
# Where a consumer parks an event it failed on for good (shiori/events.py); checked if declared.
DEAD_LETTER_QUEUES = ("dead-letters.catalog", "dead-letters.patrons")
MAX_ERRORS_SHOWN = 5


class BenchEcho:
    """The floor: an RPC that does nothing."""

    name = "bench_echo"

    @rpc
    def ping(self):
        return None


# --- the HTTP client side ------------------------------------------------------------------------------


class Client:
    """One simulated desk: its own patron, its own items, its own HTTP session."""

    def __init__(self, level, index, card_number, patron_id, barcodes):
        self.level, self.index = level, index
        self.card_number, self.patron_id, self.barcodes = card_number, patron_id, barcodes
        self.checkout_latency, self.checkin_latency = [], []
        self.pairs = 0
        self.checkouts_done = 0  # every successful check-out, warm-up included (the patron's total_uses)
        self.errors = []  # (operation, status, text)

    def _timed(self, session, base, path, body, operation, latencies):
        started = time.perf_counter()
        try:
            response = session.post(base + path, json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:
            self.errors.append((operation, "exception", repr(error)[:300]))
            return False
        elapsed = time.perf_counter() - started
        if not 200 <= response.status_code < 300:  # any non-2xx is an error
            self.errors.append((operation, response.status_code, response.text[:300]))
            return False
        if latencies is not None:
            latencies.append(elapsed)
        return True

    def pair(self, session, base, barcode, record):
        checkout = {"card_number": self.card_number, "item_barcode": barcode, "library": LIBRARY}
        checkin = {"item_barcode": barcode, "library": LIBRARY}
        lent = self._timed(session, base, "/api/v1/checkouts", checkout, "checkout",
                           self.checkout_latency if record else None)
        if lent:
            self.checkouts_done += 1
        returned = self._timed(session, base, "/api/v1/checkins", checkin, "checkin",
                               self.checkin_latency if record else None)
        if not lent and not returned and self.errors and self.errors[-1][1] == 409:
            self.errors.pop()  # the repair check-in found nothing on loan: only the check-out failed
        return lent and returned


def run_level(base_url, token, clients, seconds, max_pairs, stopping):
    """All clients at once for ``seconds`` (or ``max_pairs`` pairs each); per-request latencies recorded."""
    ready = threading.Semaphore(0)
    go = threading.Event()
    window = {}

    def work(client):
        session = http_session(token)
        try:
            try:
                client.pair(session, base_url, client.barcodes[0], record=False)  # warm-up: connection, caches
            finally:
                ready.release()
            go.wait()
            deadline = window["deadline"]
            turn = 0
            while client.pairs < max_pairs and time.monotonic() < deadline and not stopping.is_set():
                barcode = client.barcodes[turn % len(client.barcodes)]
                turn += 1
                if client.pair(session, base_url, barcode, record=True):
                    client.pairs += 1
        finally:
            session.close()

    threads = [threading.Thread(target=work, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for _ in clients:
        ready.acquire()
    window["started"] = time.monotonic()
    window["deadline"] = window["started"] + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - window["started"]

    checkouts = [value for client in clients for value in client.checkout_latency]
    checkins = [value for client in clients for value in client.checkin_latency]
    errors = [error for client in clients for error in client.errors]
    pairs = sum(client.pairs for client in clients)
    operations = len(checkouts) + len(checkins)
    return {
        "clients": len(clients), "seconds": round(elapsed, 3), "pairs": pairs,
        "operations": operations, "ops_per_s": round(operations / elapsed, 1) if elapsed else None,
        "pairs_per_s": round(pairs / elapsed, 1) if elapsed else None,
        "checkout": latency_summary(checkouts), "checkin": latency_summary(checkins),
        "errors": len(errors),
        "first_errors": [{"operation": op, "status": status, "body": text} for op, status, text in
                         errors[:MAX_ERRORS_SHOWN]],
    }


# --- set-up, events settling, floors -------------------------------------------------------------------


def set_up(api, levels, items_per_client):
    """A library, and per (level, client) a patron, a work and its own copies."""
    api.expect(api.post("/api/v1/libraries", {"code": LIBRARY, "name": "ベンチマーク図書館", "kind": "main"}), 201)
    clients = {}
    for level in levels:
        clients[level] = []
        for index in range(level):
            patron = api.expect(api.post("/api/v1/patrons", {
                "name": f"ベンチ 利用者{level}-{index}", "name_kana": "ベンチ リヨウシャ",
                "birth_date": "1990-01-01", "address": "岐阜県海津市海津町高須515", "phone": "0584-11-2222",
                "home_library": LIBRARY, "category": "adult",
            }), 201)
            work = api.expect(api.post("/api/v1/works", {
                "title": f"ベンチマークの本 {level}-{index}", "authors": [{"name": "試験 著者", "role": "author"}],
                "publisher": "ベンチ出版",
            }), 201)
            barcodes = []
            for copy in range(items_per_client):
                barcode = f"BENCH-{level}-{index}-{copy}"
                api.expect(api.post("/api/v1/items", {"barcode": barcode, "work_id": work["id"], "library": LIBRARY}),
                           201)
                barcodes.append(barcode)
            clients[level].append(Client(level, index, patron["card_number"], patron["id"], barcodes))
    return clients


def queue_depths(amqp_uri, queues):
    """Ready messages in each queue (None if not declared; unacknowledged ones in flight are not counted)."""
    from kombu import Connection

    depths = {}
    with Connection(amqp_uri, connect_timeout=5) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                _name, count, _consumers = channel.queue_declare(queue=queue, passive=True)
                depths[queue] = count
            except Exception:  # noqa: BLE001  (not declared yet)
                depths[queue] = None
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001
                    pass
    return depths


def settle(api, amqp_uri, clients, stopping):
    """After a level: how long until the event consumers caught up (catalog shows every copy available,
    each patron's total_uses counts every check-out), and what is still wrong after SETTLE_SECONDS."""
    started = time.monotonic()
    backlog = None
    try:
        depths = queue_depths(amqp_uri, EVENT_QUEUES)
        if any(count is not None for count in depths.values()):
            backlog = sum(count or 0 for count in depths.values())
    except Exception as error:  # noqa: BLE001
        say(f"  (could not read queue depths: {error})")

    def check():
        wrong = []
        for client in clients:
            for barcode in client.barcodes:
                item = api.expect(api.get(f"/api/v1/items/{barcode}"), 200)
                if item["status"] != "available":
                    wrong.append(f"item {barcode} shows {item['status']}")
            patron = api.expect(api.get(f"/api/v1/patrons/{client.patron_id}"), 200)
            if patron["total_uses"] != client.checkouts_done:
                wrong.append(f"patron {client.patron_id} total_uses={patron['total_uses']} "
                             f"after {client.checkouts_done} check-outs")
        return wrong

    wrong = check()
    while wrong and time.monotonic() - started < SETTLE_SECONDS and not stopping.is_set():
        time.sleep(0.5)
        wrong = check()
    dead_letters = None
    try:
        dead_letters = sum(count or 0 for count in queue_depths(amqp_uri, DEAD_LETTER_QUEUES).values())
    except Exception as error:  # noqa: BLE001
        say(f"  (could not read dead-letter queues: {error})")
    return {
        "event_backlog_at_end": backlog, "dead_lettered_events": dead_letters,
        "settled": not wrong, "settle_seconds": round(time.monotonic() - started, 2) if not wrong else None,
        "inconsistencies": len(wrong), "first_inconsistencies": wrong[:MAX_ERRORS_SHOWN],
    }


def rpc_floor(operator_environ, calls):
    """Sequential empty RPCs to ``bench_echo`` (started here) through one standalone proxy, with a signed
    caller context checked as every service checks it, over the operator's broker user."""
    runner = ServiceRunner({"AMQP_URI": operator_environ["AMQP_URI"], "BROKER_PRINCIPAL": OPERATOR,
                            "CONTEXT_VERIFY_KEYS": operator_environ["SHIORI_CONTEXT_VERIFY_KEYS"],
                            "max_workers": 10})
    runner.add_service(BenchEcho)
    runner.start()
    try:
        latencies = []
        with operator_rpc(TENANT, 30, operator_environ) as proxy:
            for _ in range(50):  # warm-up: reply queue, connections
                proxy.bench_echo.ping()
            for _ in range(calls):
                started = time.perf_counter()
                proxy.bench_echo.ping()
                latencies.append(time.perf_counter() - started)
        return latency_summary(latencies)
    finally:
        runner.stop()


def health_floor(base_url, calls):
    session = http_session()
    latencies, errors = [], 0
    try:
        for _ in range(10):
            session.get(base_url + "/health", timeout=REQUEST_TIMEOUT)
        for _ in range(calls):
            started = time.perf_counter()
            response = session.get(base_url + "/health", timeout=REQUEST_TIMEOUT)
            elapsed = time.perf_counter() - started
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                errors += 1
    finally:
        session.close()
    return dict(latency_summary(latencies), errors=errors)


# --- reporting --------------------------------------------------------------------------------------


def print_level(result):
    co, ci = result["checkout"], result["checkin"]
    say(f"  {result['pairs']} check-out+check-in pairs in {result['seconds']:.1f} s: "
        f"{result['ops_per_s']} ops/s ({result['pairs_per_s']} pairs/s)")
    say(f"  checkout ms p50/p95/p99 {co['p50_ms']}/{co['p95_ms']}/{co['p99_ms']} (max {co['max_ms']})")
    say(f"  checkin  ms p50/p95/p99 {ci['p50_ms']}/{ci['p95_ms']}/{ci['p99_ms']} (max {ci['max_ms']})")
    say(f"  errors: {result['errors']}")
    if result.get("cpu_percent"):
        cpu = ", ".join(f"{name} {value}" for name, value in result["cpu_percent"].items())
        say(f"  CPU, % of one core (machine: every process, out of {100 * (os.cpu_count() or 1)}): {cpu}")
    for error in result["first_errors"]:
        say(f"    {error['operation']} -> {error['status']}: {error['body']}")
    events = result.get("events")
    if events:
        if events["settled"]:
            say(f"  events: backlog {events['event_backlog_at_end']} at the end; "
                f"catalogue and patrons caught up {events['settle_seconds']} s after the level")
        else:
            say(f"  events: NOT consistent {SETTLE_SECONDS} s after the level "
                f"({events['inconsistencies']} problems), e.g.:")
            for line in events["first_inconsistencies"]:
                say(f"    {line}")
        if events.get("dead_lettered_events"):
            say(f"  events: {events['dead_lettered_events']} event(s) parked in dead-letter queues (failed handlers)")


def print_table(report):
    database = report["database"]
    say("")
    say(f"== circulation benchmark, {database}, {report['cpus']} CPUs, {report['seconds_per_level']} s per level ==")
    say(f"{'clients':>7} {'pairs':>7} {'ops/s':>8} | {'checkout p50':>12} {'p95':>7} {'p99':>7} | "
        f"{'checkin p50':>11} {'p95':>7} {'p99':>7} | {'errors':>6} {'CPU%':>6}")
    for level in report["levels"]:
        co, ci = level["checkout"], level["checkin"]
        say(f"{level['clients']:>7} {level['pairs']:>7} {fmt(level['ops_per_s'])} | "
            f"{fmt(co['p50_ms'], 12)} {fmt(co['p95_ms'], 7)} {fmt(co['p99_ms'], 7)} | "
            f"{fmt(ci['p50_ms'], 11)} {fmt(ci['p95_ms'], 7)} {fmt(ci['p99_ms'], 7)} | {level['errors']:>6} "
            f"{fmt(level.get('cpu_percent', {}).get('machine'), 6)}")
    floor, health = report.get("rpc_floor"), report.get("health")
    if floor:
        say(f"empty nameko RPC ({floor['count']} sequential): p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms, "
            f"p99 {floor['p99_ms']} ms")
    if health:
        say(f"GET /health via gateway ({health['count']} sequential, 3 parallel RPCs each): p50 {health['p50_ms']} ms, "
            f"p95 {health['p95_ms']} ms, p99 {health['p99_ms']} ms, errors {health['errors']}")
    say(f"(latencies in ms; ops/s counts check-outs and check-ins; CPU% = whole machine during the level, out of "
        f"{100 * (report['cpus'] or 1)}; all clients run in this one process)")


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,5,20",
                        help="comma-separated concurrency levels (default 1,5,20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per level (default 10)")
    parser.add_argument("--max-pairs", type=int, default=2000,
                        help="at most this many check-out+check-in pairs per client per level (default 2000)")
    parser.add_argument("--items-per-client", type=int, default=2, help="copies each client cycles through")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rpc-calls", type=int, default=1000, help="sequential empty RPCs (default 1000)")
    parser.add_argument("--health-calls", type=int, default=200, help="sequential GET /health (default 200)")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results file (default benchmarks/results/circulation-<database>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory (logs) and databases")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes numbers such as 1,5,20")
    if not args.levels or min(args.levels) < 1 or max(args.levels) > 200:
        parser.error("--clients: each level between 1 and 200")
    if args.seconds <= 0 or args.seconds > 120:
        parser.error("--seconds: between 0 and 120")
    if args.items_per_client < 1 or args.max_pairs < 1:
        parser.error("--items-per-client and --max-pairs must be at least 1")
    check_broker_arguments(args)
    if args.pg_host not in (LOCALHOST, "localhost"):
        parser.error(f"--pg-host must be {LOCALHOST}")
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()

    broker = Broker(args.broker_url, args.broker_admin_url)
    under_test = SystemUnderTest(args.database, broker, keep_data=args.keep_data,
                                 postgres={"host": args.pg_host, "port": args.pg_port})
    report = {
        "benchmark": "circulation", "database": args.database,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "seconds_per_level": args.seconds, "max_pairs_per_client": args.max_pairs,
        "items_per_client": args.items_per_client, "levels": [],
    }
    exit_code = 0
    try:
        say(f"data dir {under_test.data_dir}")
        say(f"broker virtual host {broker.vhost}")
        report["vhost"] = broker.vhost
        started = time.monotonic()
        base_url = under_test.start()
        system = under_test.system
        report["startup_seconds"] = round(time.monotonic() - started, 1)
        say(f"system up at {base_url} in {report['startup_seconds']} s")

        token = login(base_url, system.password)
        admin = Api(base_url, token)
        started = time.monotonic()
        clients = set_up(admin, args.levels, args.items_per_client)
        count = sum(args.levels)
        report["setup"] = {"patrons": count, "works": count, "items": count * args.items_per_client,
                           "seconds": round(time.monotonic() - started, 1)}
        say(f"set up 1 library, {count} patrons, {count} works, {count * args.items_per_client} items "
            f"in {report['setup']['seconds']} s")

        say(f"empty RPC floor: {args.rpc_calls} sequential bench_echo.ping() ...")
        report["rpc_floor"] = rpc_floor(system.operator_environment(), args.rpc_calls)
        floor = report["rpc_floor"]
        say(f"  p50/p95/p99 {floor['p50_ms']}/{floor['p95_ms']}/{floor['p99_ms']} ms")
        say(f"GET /health: {args.health_calls} sequential ...")
        report["health"] = health_floor(base_url, args.health_calls)
        health = report["health"]
        say(f"  p50/p95/p99 {health['p50_ms']}/{health['p95_ms']}/{health['p99_ms']} ms, errors {health['errors']}")

        before = machine_cpu()
        time.sleep(1.0)
        after = machine_cpu()
        if before and after and after[1] > before[1]:
            idle_load = round(100 * (os.cpu_count() or 1) * (after[0] - before[0]) / (after[1] - before[1]), 1)
            report["machine_cpu_percent_idle"] = idle_load
            say(f"machine CPU with the system idle: {idle_load}% of one core"
                + ("  (WARNING: something else is busy on this machine; figures will be noisy)"
                   if idle_load > 25 else ""))

        for level in args.levels:
            if stopping.is_set():
                break
            say(f"{level} client(s) for {args.seconds:g} s ...")
            processes = system.processes()
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            machine_before = machine_cpu()
            result = run_level(base_url, token, clients[level], args.seconds, args.max_pairs, stopping)
            result["cpu_percent"] = {
                name: round(100 * (cpu_seconds(pid) - cpu_before[name]) / result["seconds"], 1)
                for name, pid in processes.items()
                if cpu_before[name] is not None and cpu_seconds(pid) is not None
            }
            machine_after = machine_cpu()
            if machine_before and machine_after and machine_after[1] > machine_before[1]:
                busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
                # whole machine, in % of one core like the rest: broker, PostgreSQL and anything else included
                result["cpu_percent"]["machine"] = round(busy * 100 * (os.cpu_count() or 1), 1)
            result["events"] = settle(admin, system.operator_environment()["AMQP_URI"], clients[level], stopping)
            report["levels"].append(result)
            print_level(result)
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        say("stopping the system ...")
        counts, samples = under_test.close()  # after the stop, which may log too
        report["log_problems"] = {"counts": counts, "first": samples}
        if any(counts.values()):
            say(f"warnings/errors in the service logs: {counts}")
            for line in samples:
                say(f"  {line}")

    if report["levels"]:
        print_table(report)
        output = Path(args.output) if args.output else RESULTS_DIR / f"circulation-{args.database}.json"
        write_report(report, output, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
