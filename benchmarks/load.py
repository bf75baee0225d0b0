"""Load benchmark: a desk day's mix of searches, patron look-ups, check-outs, check-ins, renewals and holds
from many clients at once, with each process's CPU and memory; a soak mode that looks for drift; and what
exactly-once costs a check-out.

    .venv/bin/python benchmarks/load.py [--clients 20,100] [--seconds 60] [--database sqlite|postgresql]
    .venv/bin/python benchmarks/load.py --soak 3600 [--soak-clients 20] [--sample-every 60]

Starts the whole system through the harness (a data folder, a throwaway virtual host, with ``--database
postgresql`` throwaway databases; all removed at the end, also on Ctrl-C and errors), and sets up through the
HTTP API a library, a loan rule, the Aozora Bunko index as the catalogue (14,283 works, imported as a file),
a pool of works whose copies are out for good (to hold), and per client its own patron and copies.

The mix (desk_day.MIX, per 100 operations; our assumption, see there and benchmarks/README.md): 27 searches
on the OPAC's results page, 20 searches on the staff API, 10 patron look-ups by card, 15 check-outs, 15
check-ins, 5 renewals, 4 holds placed and 4 cancelled. Every write carries a fresh Idempotency-Key, and a
client that gets no answer or a 503 sends it again with the same key.

The load comes from locust (``benchmarks/locustfile.py``), run as ``python -m locust`` in a process of its
own: locust runs on gevent and this one on eventlet (the harness patches the standard library on import),
and the two must not share a process. This process writes the plan, starts the load, samples each process's
CPU and resident memory while it runs, and reads the load's event log (one line per operation) afterwards.

Per level (``--clients``, each for ``--seconds``): throughput in operations/s, in total and per operation,
p50/p95/p99 per operation, errors by status, retries, and each process's CPU (seconds, % of one core) and
RSS (the services', the load's and this one's). Before the levels: check-out and check-in p50/p95 from one
client, one after the other, with the client's Idempotency-Key (the service keeps the answer: one more
write) against without one (the gateway's own key: a row in the change's own transaction), interleaved.

``--soak SECONDS`` runs one steady load instead (``--soak-clients``, 20) for that long, sampling every
``--sample-every`` seconds (60) each operation's p50/p95 and each process's RSS, and says whether anything
drifted (desk_day.drift: the last window's latency against the first's, memory growth after the first).

Prints the figures and writes JSON to ``benchmarks/results/load-<database>.json`` (``load-soak-<database>.json``
for a soak), or ``--output``. Only 127.0.0.1 is used. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before requests or psycopg2 are imported

import argparse  # noqa: E402
import gzip  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402

import desk_day  # noqa: E402
from figures import latency_summary  # noqa: E402
from harness import (  # noqa: E402
    LOCALHOST, REPO, REQUEST_TIMEOUT, RESULTS_DIR, Api, Broker, Stop, SystemUnderTest, add_broker_arguments,
    check_broker_arguments, cpu_seconds, ended_early, free_port, http_session, login, machine_cpu, say,
    stop_main_on_signals, write_report,
)
from services.catalog.aozora import AOZORA_INDEX, open_aozora_index, read_aozora_works  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LIBRARY = "bench"
LOAN_RULE = {"loan_days": 14, "max_items": 1000, "renewals": desk_day.RENEWAL_LIMIT, "max_holds": 20}
HOLD_POOL = 20  # works to hold, each with one copy out on loan for good
SEARCH_TERMS = 300
SET_UP_IN_PARALLEL = 8
START_SECONDS = 120  # for the load to have every user running
STOP_TIMEOUT = REQUEST_TIMEOUT + 10  # a stopping user finishes its operation; one attempt waits this long at most
EXACTLY_ONCE_WARM_UP = 20
SEED = 14


# --- set-up, through the HTTP API ------------------------------------------------------------------------


def post_once(api, path, expected, body=None, data=None, timeout=REQUEST_TIMEOUT):
    """A set-up write under an Idempotency-Key of its own, sent again with the same key when a service did not
    answer in time (the catalogue's first reading loads its dictionary, which can take longer than a deadline)."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(1, desk_day.ATTEMPTS + 1):
        try:
            response = api.session.post(api.base + path, json=body, data=data, headers=headers, timeout=timeout)
        except requests.ConnectionError:
            if attempt == desk_day.ATTEMPTS:
                raise
            continue
        if not desk_day.retried(response.status_code) or attempt == desk_day.ATTEMPTS:
            return api.expect(response, expected)
        time.sleep(desk_day.backoff(attempt))


def set_up_catalogue(api):
    """The library, the loan rule, the works to hold (whose first record loads the catalogue's dictionary) and
    the Aozora Bunko index, imported as a staff client uploads a file. Answers (the import's counts, the works to
    hold)."""
    post_once(api, "/api/v1/libraries", 201, {"code": LIBRARY, "name": "ベンチマーク図書館", "kind": "main"})
    post_once(api, "/api/v1/loan-policies", 201, LOAN_RULE)
    hold_works = set_up_hold_pool(api)
    imported = post_once(api, "/api/v1/works/import?format=aozora-csv", 200,
                         data=gzip.decompress(AOZORA_INDEX.read_bytes()), timeout=600)
    return imported, hold_works


def search_terms(count=SEARCH_TERMS, seed=SEED):
    """What residents and staff type: an author's family name, a title's first characters or an author's full
    name, drawn from the catalogue that was imported."""
    works = sorted(read_aozora_works(open_aozora_index()), key=lambda work: work["source_id"])
    rng = random.Random(seed)
    terms = []
    while len(terms) < count:
        work = rng.choice(works)
        kind = rng.random()
        if kind < 0.4:
            terms.append(work["title"][:rng.choice((2, 3, 4))])
        else:
            name = work["authors"][0]["name"]
            terms.append(name.split()[0] if kind < 0.8 else name.replace(" ", ""))
    return terms


def register_patron(api, label):
    return post_once(api, "/api/v1/patrons", 201, {
        "name": f"ベンチ 利用者{label}", "name_kana": "ベンチ リヨウシャ", "birth_date": "1990-01-01",
        "address": "岐阜県海津市海津町高須515", "phone": "0584-11-2222", "home_library": LIBRARY,
        "category": "adult",
    })


def add_work(api, title):
    return post_once(api, "/api/v1/works", 201, {
        "title": title, "authors": [{"name": "試験 著者", "role": "author"}], "publisher": "ベンチ出版"})


def add_copy(api, barcode, work_id):
    post_once(api, "/api/v1/items", 201, {"barcode": barcode, "work_id": work_id, "library": LIBRARY})


def lend(api, card_number, barcode):
    return post_once(api, "/api/v1/checkouts", 201, {"card_number": card_number, "item_barcode": barcode,
                                                     "library": LIBRARY})


def set_up_hold_pool(api):
    """Works out on loan for good (to one patron of the pool), which every desk's holds queue for."""
    holder = register_patron(api, "予約待ち")
    works = []
    for index in range(HOLD_POOL):
        work = add_work(api, f"人気の本 {index}")
        add_copy(api, f"POOL-{index}", work["id"])
        lend(api, holder["card_number"], f"POOL-{index}")
        works.append(work["id"])
    return works


def set_up_desks(api, label, count, copies):
    """Per desk its own patron and work with ``copies`` copies, half of them lent to its patron already (so it
    has loans to renew and return from the start)."""
    def desk(index):
        patron = register_patron(api, f"{label}-{index}")
        work = add_work(api, f"ベンチマークの本 {label}-{index}")
        planned = []
        for number in range(copies):
            barcode = f"LOAD-{label}-{index}-{number}"
            add_copy(api, barcode, work["id"])
            loan_id = lend(api, patron["card_number"], barcode)["loan_id"] if number < copies // 2 else None
            planned.append({"barcode": barcode, "loan_id": loan_id, "renewals": 0})
        return {"card_number": patron["card_number"], "patron_id": patron["id"], "copies": planned}

    pool = eventlet.GreenPool(SET_UP_IN_PARALLEL)
    return list(pool.imap(desk, range(count)))


# --- what exactly-once costs a check-out ---------------------------------------------------------------


def exactly_once_cost(base_url, token, card_number, barcode, pairs, stopping):
    """Check-out and check-in of one copy, one after the other from one client, alternately with a key of the
    client's (kept with its answer) and without (the gateway's own key): p50/p95 of each and the differences."""
    session = http_session(token)
    latencies = {mode: {"checkout": [], "checkin": []} for mode in ("client_key", "gateway_key")}
    errors = []

    def timed(path, body, keyed):
        headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
        began = time.perf_counter()
        response = session.post(base_url + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT)
        elapsed = time.perf_counter() - began
        if not 200 <= response.status_code < 300:
            errors.append(f"{path} -> {response.status_code}: {response.text[:200]}")
            return None
        return elapsed

    checkout = {"card_number": card_number, "item_barcode": barcode, "library": LIBRARY}
    checkin = {"item_barcode": barcode, "library": LIBRARY}
    try:
        for turn in range(EXACTLY_ONCE_WARM_UP + pairs):
            modes = ("client_key", "gateway_key") if turn % 2 == 0 else ("gateway_key", "client_key")
            for mode in modes:
                if stopping.is_set():
                    raise Stop("stopping")
                lent = timed("/api/v1/checkouts", checkout, mode == "client_key")
                returned = timed("/api/v1/checkins", checkin, mode == "client_key")
                if turn >= EXACTLY_ONCE_WARM_UP:
                    for operation, elapsed in (("checkout", lent), ("checkin", returned)):
                        if elapsed is not None:
                            latencies[mode][operation].append(elapsed)
    finally:
        session.close()
    result = {"pairs": pairs, "errors": len(errors), "first_errors": errors[:5]}
    for mode, measured in latencies.items():
        result[mode] = {operation: latency_summary(values) for operation, values in measured.items()}
    result["client_key_minus_gateway_key_ms"] = {
        operation: {measure: round(result["client_key"][operation][measure]
                                   - result["gateway_key"][operation][measure], 2)
                    for measure in ("p50_ms", "p95_ms")
                    if result["client_key"][operation][measure] is not None
                    and result["gateway_key"][operation][measure] is not None}
        for operation in ("checkout", "checkin")
    }
    return result


# --- the load, in its own process -------------------------------------------------------------------------


def memory_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB, from /proc; (None, None) when it is gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return found.get("VmRSS"), found.get("VmHWM")


def sample(processes):
    sampled = {"at": time.time(), "machine": machine_cpu(), "processes": {}}
    for name, pid in processes.items():
        rss, peak = memory_kib(pid)
        sampled["processes"][name] = {"cpu_s": cpu_seconds(pid), "rss_kib": rss, "peak_kib": peak}
    return sampled


def load_environment():
    """The load's environment: ours without proxies (127.0.0.1 only) and without anything of the system's."""
    return {key: value for key, value in os.environ.items()
            if "proxy" not in key.lower() and not key.startswith("SHIORI_") and key != "AMQP_URI"}


def wait_for_window(events_path, locust, deadline):
    while time.monotonic() < deadline:
        start, _end, _events = desk_day.read_event_log(events_path.read_text(encoding="utf-8").splitlines())
        if start is not None:
            return start
        if locust.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def stop_load(locust):
    if locust.poll() is not None:
        return
    locust.send_signal(signal.SIGTERM)
    try:
        locust.wait(STOP_TIMEOUT + 20)
    except subprocess.TimeoutExpired:
        say("  the load did not stop in time: killing it")
        locust.kill()
        locust.wait()


def run_load(system, plan, label, clients, seconds, every, data_dir, stopping):
    """``clients`` desks for ``seconds`` from the moment all run, sampled every ``every`` seconds: (the window's
    start, its end, the operations logged, the samples)."""
    events_path = data_dir / f"events-{label}.tsv"
    events_path.write_text("", encoding="utf-8")
    plan_path = data_dir / f"plan-{label}.json"
    plan_path.write_text(json.dumps({**plan, "seconds": seconds, "event_log": str(events_path)}), encoding="utf-8")
    output = open(data_dir / f"locust-{label}.log", "wb")
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", plan["gateway"],
         "-u", str(clients), "-r", str(clients), "--run-time", f"{int(seconds + START_SECONDS + 60)}s",
         "--stop-timeout", str(STOP_TIMEOUT), "--exit-code-on-error", "0", "--only-summary",
         "--loglevel", "WARNING", "--plan", str(plan_path)],
        cwd=REPO, env=load_environment(), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # our Ctrl-C is handled here, which then stops the load by its id
    )
    output.close()
    try:
        start = wait_for_window(events_path, locust, time.monotonic() + START_SECONDS)
        if start is None:
            raise RuntimeError(f"the load did not start (exit {locust.poll()}):\n"
                               + (data_dir / f"locust-{label}.log").read_text(errors="replace")[-3000:])
        processes = dict(system.processes(), load=locust.pid)
        samples = [sample(processes)]
        marks = [start + offset for offset in range(every, int(seconds) + 1, every)]
        if not marks or marks[-1] < start + seconds:
            marks.append(start + seconds)
        for mark in marks:
            while time.time() < mark and not stopping.is_set():
                time.sleep(min(1.0, mark - time.time()))
            if stopping.is_set():
                raise Stop("stopping")
            samples.append(sample(processes))
            if every < seconds:
                say(f"  {round(mark - start)} s of {seconds:g}: "
                    + ", ".join(f"{name} {rss_mib(figures)} MiB" for name, figures in samples[-1]["processes"].items()
                                if figures["rss_kib"] is not None))
        try:
            locust.wait(STOP_TIMEOUT + 20)
        except subprocess.TimeoutExpired:
            pass
    finally:
        stop_load(locust)
    start, end, events = desk_day.read_event_log(events_path.read_text(encoding="utf-8").splitlines())
    return start, end or start + seconds, events, samples


def rss_mib(figures):
    return None if figures["rss_kib"] is None else round(figures["rss_kib"] / 1024, 1)


def process_figures(first, last, samples):
    """Per process over [first, last]: CPU seconds and % of one core, RSS at the end, the largest RSS sampled and
    the process's peak (VmHWM); and the whole machine's CPU in % of one core."""
    elapsed = last["at"] - first["at"]
    found = {}
    for name, before in first["processes"].items():
        after = last["processes"].get(name, {})
        cpu = (after.get("cpu_s") - before["cpu_s"]) if after.get("cpu_s") is not None and \
            before["cpu_s"] is not None else None
        sampled = [entry["processes"][name]["rss_kib"] for entry in samples
                   if entry["processes"].get(name, {}).get("rss_kib") is not None]
        found[name] = {
            "cpu_s": round(cpu, 2) if cpu is not None else None,
            "cpu_percent": round(100 * cpu / elapsed, 1) if cpu is not None and elapsed > 0 else None,
            "rss_mib": rss_mib(after) if after else None,
            "rss_max_sampled_mib": round(max(sampled) / 1024, 1) if sampled else None,
            "peak_rss_mib": round(after["peak_kib"] / 1024, 1) if after and after.get("peak_kib") else None,
        }
    machine = None
    if first["machine"] and last["machine"] and last["machine"][1] > first["machine"][1]:
        busy = (last["machine"][0] - first["machine"][0]) / (last["machine"][1] - first["machine"][1])
        machine = round(100 * busy * (os.cpu_count() or 1), 1)
    return {"processes": found, "machine_cpu_percent": machine}


def measure_level(system, plan, label, clients, seconds, data_dir, stopping):
    start, end, events, samples = run_load(system, plan, label, clients, seconds, int(seconds) + 1, data_dir,
                                           stopping)
    figures = desk_day.operation_figures(desk_day.within(events, start, end), end - start)
    return {"clients": clients, **figures, "mix_planned": desk_day.mix_shares(),
            **process_figures(samples[0], samples[-1], samples)}


def measure_soak(system, plan, clients, seconds, every, data_dir, stopping):
    start, end, events, samples = run_load(system, plan, "soak", clients, seconds, every, data_dir, stopping)
    count = int(seconds // every)
    windows = desk_day.windows(events, start, every, count)
    rss = [{name: figures["rss_kib"] / 1024 for name, figures in entry["processes"].items()
            if figures["rss_kib"] is not None} for entry in samples]
    result = {
        "clients": clients, "seconds": seconds, "sample_every_s": every,
        "whole": desk_day.operation_figures(desk_day.within(events, start, end), end - start),
        "windows": [dict(window, rss_mib={name: round(value, 1) for name, value in rss[index + 1].items()}
                         if index + 1 < len(rss) else {}) for index, window in enumerate(windows)],
        **process_figures(samples[0], samples[-1], samples),
    }
    result["drift"] = desk_day.drift(windows[0], windows[-1], rss[1], rss[min(count, len(rss) - 1)])
    return result


# --- reporting -------------------------------------------------------------------------------------------


def print_operations(figures):
    say(f"  {figures['operations']} operations in {figures['seconds']:.1f} s: {figures['ops_per_s']} ops/s; "
        f"errors {figures['errors'] or 'none'}; {figures['retried']} retried")
    say(f"  {'operation':<14} {'count':>6} {'ops/s':>7} {'share':>6} | {'p50':>8} {'p95':>8} {'p99':>8} "
        f"{'max':>8} | errors")
    for operation, each in figures["per_operation"].items():
        share = f"{100 * each['share']:.1f}%" if each["share"] is not None else "-"
        retried = f" ({each['retried']} retried)" if each["retried"] else ""
        say(f"  {operation:<14} {each['count']:>6} {each['ops_per_s'] or 0:>7.2f} {share:>6} | "
            f"{ms(each['p50_ms'])} {ms(each['p95_ms'])} {ms(each['p99_ms'])} {ms(each['max_ms'])} | "
            f"{each['errors'] or '-'}{retried}")


def ms(value):
    return f"{'-':>8}" if value is None else f"{value:>8.1f}"


def print_processes(result):
    say(f"  {'process':<12} {'CPU s':>7} {'% core':>7} {'RSS MiB':>8} {'peak':>7}")
    for name, each in result["processes"].items():
        say(f"  {name:<12} {fig(each['cpu_s'], 7, 2)} {fig(each['cpu_percent'], 7)} {fig(each['rss_mib'], 8)} "
            f"{fig(each['peak_rss_mib'], 7)}")
    say(f"  machine CPU {result['machine_cpu_percent']}% of one core (of {100 * (os.cpu_count() or 1)}%)")


def fig(value, width, digits=1):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_exactly_once(result):
    say(f"  {result['pairs']} check-outs and check-ins each way, interleaved; errors {result['errors']}")
    for operation in ("checkout", "checkin"):
        keyed, plain = result["client_key"][operation], result["gateway_key"][operation]
        difference = result["client_key_minus_gateway_key_ms"][operation]
        say(f"  {operation:<8} client's key p50/p95 {keyed['p50_ms']}/{keyed['p95_ms']} ms, "
            f"gateway's key {plain['p50_ms']}/{plain['p95_ms']} ms: difference "
            f"{difference.get('p50_ms')}/{difference.get('p95_ms')} ms")
    for line in result["first_errors"]:
        say(f"    {line}")


def print_soak(result):
    say(f"  {'window':>11} {'ops/s':>7} " + " ".join(f"{operation:>13}" for operation in desk_day.MIX))
    for window in result["windows"]:
        cells = []
        for operation in desk_day.MIX:
            each = window["per_operation"][operation]
            cells.append(f"{ms(each['p50_ms']).strip()}/{ms(each['p95_ms']).strip()}".rjust(13))
        say(f"  {window['from_s']:>5.0f}-{window['to_s']:<5.0f} {window['ops_per_s']:>7} " + " ".join(cells))
    say("  (p50/p95 ms per operation)")
    drift = result["drift"]
    for name, memory in drift["rss"].items():
        say(f"  {name:<12} RSS {memory['first_mib']} -> {memory['last_mib']} MiB "
            f"({memory['growth_mib']:+} MiB, {memory['growth_percent']:+}%)")
    say(f"  verdict: {drift['verdict']}")


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="20,100", help="comma-separated concurrency levels (default 20,100)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per level (default 60)")
    parser.add_argument("--copies-per-desk", type=int, default=6, help="copies each client lends and takes back")
    parser.add_argument("--exactly-once-pairs", type=int, default=300,
                        help="check-outs and check-ins with and without the client's key (default 300; 0: skip)")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="a steady load for this long instead of the levels (3600 is the intended use)")
    parser.add_argument("--soak-clients", type=int, default=20, help="clients of the soak (default 20)")
    parser.add_argument("--sample-every", type=int, default=60, help="seconds between a soak's samples (default 60)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="run the system from this source tree (an earlier commit's `git archive`; default this "
                             "checkout): the load and its figures stay this checkout's")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results file (default benchmarks/results/load[-soak]-<database>.json)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the data directory (logs, the load's plan and event log) and databases")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes numbers such as 20,100")
    if not args.levels or min(args.levels) < 1 or max(args.levels) > 500:
        parser.error("--clients: each level between 1 and 500")
    if not 1 <= args.seconds <= 3600:
        parser.error("--seconds: between 1 and 3600")
    if args.copies_per_desk < 2:
        parser.error("--copies-per-desk: at least 2")
    if args.soak and (args.sample_every < 5 or args.soak < 2 * args.sample_every):
        parser.error("--soak needs at least two windows of --sample-every (at least 5 s)")
    if args.soak and not 1 <= args.soak_clients <= 500:
        parser.error("--soak-clients: between 1 and 500")
    check_broker_arguments(args)
    if args.pg_host not in (LOCALHOST, "localhost"):
        parser.error(f"--pg-host must be {LOCALHOST}")
    if importlib.util.find_spec("locust") is None:  # looked up, not imported: it would patch this process for gevent
        parser.error("locust is not installed: .venv/bin/pip install -e '.[bench]' (make load does)")
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()
    broker = Broker(args.broker_url, args.broker_admin_url)
    running = args.soak + args.seconds * len(args.levels)
    under_test = SystemUnderTest(args.database, broker, keep_data=args.keep_data, code=args.code.resolve(),
                                 postgres={"host": args.pg_host, "port": args.pg_port},
                                 environ={"SHIORI_OPAC_PORT": str(free_port()),
                                          # one staff token for the whole run, as a desk signed in all day
                                          "SHIORI_TOKEN_LIFETIME_SECONDS": str(int(running) + 3600)})
    report = {
        "benchmark": "load-soak" if args.soak else "load", "database": args.database,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "code": str(args.code.resolve()), "mix": desk_day.MIX, "copies_per_desk": args.copies_per_desk, "levels": [],
    }
    exit_code = 0
    try:
        say(f"data dir {under_test.data_dir}")
        say(f"broker virtual host {broker.vhost}")
        started = time.monotonic()
        base_url = under_test.start()
        report["startup_seconds"] = round(time.monotonic() - started, 1)
        say(f"system up at {base_url} (OPAC {under_test.opac_url}) in {report['startup_seconds']} s")
        token = login(base_url, under_test.system.password)
        admin = Api(base_url, token)

        started = time.monotonic()
        imported, hold_works = set_up_catalogue(admin)
        levels = [args.soak_clients] if args.soak else args.levels
        desks = {level: set_up_desks(admin, f"{level}c{index}", level, args.copies_per_desk)
                 for index, level in enumerate(levels)}
        exactly_once_desk = None
        if args.exactly_once_pairs and not args.soak:
            exactly_once_desk = set_up_desks(admin, "once", 1, 2)[0]
        report["setup"] = {"works_imported": imported["added"], "hold_pool": len(hold_works),
                           "desks": sum(levels), "seconds": round(time.monotonic() - started, 1)}
        say(f"set up the Aozora index ({imported['added']} works), {len(hold_works)} works to hold and "
            f"{sum(levels)} desks in {report['setup']['seconds']} s")
        plan = {"gateway": base_url, "opac": under_test.opac_url, "token": token, "library": LIBRARY,
                "request_timeout": REQUEST_TIMEOUT, "hold_works": hold_works, "search_terms": search_terms()}

        if exactly_once_desk is not None:
            say(f"exactly-once: {args.exactly_once_pairs} check-outs + check-ins with the client's key and without ...")
            copy = exactly_once_desk["copies"][-1]["barcode"]  # one not lent in the set-up
            report["exactly_once"] = exactly_once_cost(base_url, token, exactly_once_desk["card_number"], copy,
                                                       args.exactly_once_pairs, stopping)
            print_exactly_once(report["exactly_once"])

        if args.soak:
            say(f"soak: {args.soak_clients} clients for {args.soak:g} s, sampled every {args.sample_every} s ...")
            level_plan = dict(plan, desks=desks[args.soak_clients],
                              cards=[desk["card_number"] for desk in desks[args.soak_clients]])
            report["soak"] = measure_soak(under_test.system, level_plan, args.soak_clients, args.soak,
                                          args.sample_every, under_test.data_dir, stopping)
            print_operations(report["soak"]["whole"])
            print_processes(report["soak"])
            print_soak(report["soak"])
        for level in ([] if args.soak else args.levels):
            say(f"{level} clients for {args.seconds:g} s ...")
            level_plan = dict(plan, desks=desks[level], cards=[desk["card_number"] for desk in desks[level]])
            result = measure_level(under_test.system, level_plan, f"{level}c", level, args.seconds,
                                   under_test.data_dir, stopping)
            report["levels"].append(result)
            print_operations(result)
            print_processes(result)
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        say("stopping the system ...")
        counts, samples = under_test.close()
        report["log_problems"] = {"counts": counts, "first": samples}
        if any(counts.values()):
            say(f"warnings/errors in the service logs: {counts}")
            for line in samples:
                say(f"  {line}")

    if report["levels"] or report.get("soak") or report.get("exactly_once"):
        name = f"load-soak-{args.database}.json" if args.soak else f"load-{args.database}.json"
        write_report(report, Path(args.output) if args.output else RESULTS_DIR / name, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
