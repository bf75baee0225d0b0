"""What the privacy measures of issue 11 cost a check-out: the same desk load on the system before them and now,
side by side in one run.

    .venv/bin/python benchmarks/privacy_cost.py [--before 9220968] [--clients 1,5] [--seconds 8] [--rounds 3]
                                                [--database sqlite|postgresql] [--https] [--tls]

The systems run at once, each in its own data directory, on its own virtual host and databases:

- ``before``: the code at ``--before`` (default: the last commit before issue 11), taken from git into a
  temporary folder — every process the broker's ``guest`` on one virtual host, caller contexts unsigned; code
  from issue 11 on (``--before 5528770``, the last commit before issue 12, to see what the rearranging cost)
  provisions its own broker users as ``now`` does;
- ``now``: this checkout — a broker user per process with permissions read off the code, every caller context
  signed by the gateway and verified by each service, events without headers, borrowers in an erasing store;
- with ``--https``, also ``now+https``: the same code with the staff gateway on HTTPS (a certificate of a CA made
  for the run, which the clients verify), the broker and PostgreSQL hops plain;
- with ``--tls``, also ``now+tls``: TLS on every hop — HTTPS at the gateway, AMQPS to a RabbitMQ node that
  listens on TLS only and PostgreSQL with ``sslmode=verify-full`` on a cluster that admits TLS only, both
  started for the run (tests/tls_servers.py, as the TLS test does; the cluster with fsync on, as the machine's
  server). Its broker node and cluster are not the machine's, so part of a difference is theirs.

Each system has its own library, patrons and copies (set up over HTTP). Then, per concurrency level, the two take turns
(``before``, ``now``, ``before``, ...) for ``--rounds`` rounds of ``--seconds`` each, so that whatever else the
machine does falls on both alike; the check-out and check-in latencies of all of a system's rounds are pooled.
Prints p50/p95 per system and level and the difference. Everything is removed at the end.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

from circulation import run_level, set_up  # noqa: E402
from harness import (  # noqa: E402
    REPO, RESULTS_DIR, Api, Broker, Stop, SystemUnderTest, add_broker_arguments, check_broker_arguments,
    ended_early, fmt, login, say, stop_main_on_signals, write_report,
)
from figures import latency_summary  # noqa: E402
from shiori.commands.provision import ManagementApi, ProvisioningFailed  # noqa: E402

BEFORE_ISSUE_11 = "9220968"


class GuestVirtualHost:
    """The broker as Shiori used it before issue 11: a virtual host on which ``guest`` may do anything, and one
    AMQP URI (guest's) for every process."""

    def __init__(self, broker_url, admin_url):
        self.broker_url, self.admin_url = broker_url, admin_url
        self.vhost = f"shiori-bench-before-{os.getpid()}-{secrets.token_hex(3)}"
        self.api = ManagementApi(admin_url)
        self.path = "/api/vhosts/" + quote(self.vhost, safe="")

    def create(self):
        self.api.put(self.path, {})
        self.api.put(f"/api/permissions/{quote(self.vhost, safe='')}/guest",
                     {"configure": ".*", "write": ".*", "read": ".*"})

    def environment(self):
        host = self.broker_url.split("://", 1)[1].rsplit("@", 1)[-1].rstrip("/")
        return {"AMQP_URI": f"amqp://guest:guest@{host}/{self.vhost}"}

    def delete(self):
        try:
            self.api.delete(self.path)
        except ProvisioningFailed as error:
            say(f"  could not remove the virtual host {self.vhost}: {error}")


def source_tree(revision, folder):
    """The project's files at ``revision`` (``git archive``), unpacked into ``folder``."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def provisions_its_broker(code):
    """Whether the code in ``code`` makes its own broker users (issue 11 on) rather than run as ``guest``."""
    return any((code / "shiori" / place / "provision.py").is_file() for place in (".", "commands"))


class Variant:
    """One of the systems compared (a SystemUnderTest: where its code comes from, its broker, databases and
    data directory), with its own library, patrons and copies, and its latencies pooled over the rounds."""

    def __init__(self, name, code, broker, database, keep_data, environ=None, postgres=None):
        self.name, self.code = name, code
        self.under_test = SystemUnderTest(database, broker, keep_data=keep_data, postgres=postgres, code=code,
                                          environ=environ, prefix=f"shiori-bench-{name}-")
        self.base_url = self.token = None
        self.clients, self.samples = {}, {}

    def start(self, levels, items_per_client):
        self.base_url = self.under_test.start()
        self.token = login(self.base_url, self.under_test.system.password)
        self.clients = set_up(Api(self.base_url, self.token), levels, items_per_client)
        say(f"{self.name}: up at {self.base_url} (code {self.code})")

    def run(self, level, seconds, max_pairs, stopping):
        for client in self.clients[level]:  # each round's figures are pooled below, not kept per client
            client.checkout_latency, client.checkin_latency, client.pairs = [], [], 0
        result = run_level(self.base_url, self.token, self.clients[level], seconds, max_pairs, stopping)
        pooled = self.samples.setdefault(level, {"checkout": [], "checkin": [], "errors": 0})
        pooled["checkout"] += [value for client in self.clients[level] for value in client.checkout_latency]
        pooled["checkin"] += [value for client in self.clients[level] for value in client.checkin_latency]
        pooled["errors"] += result["errors"]
        return result

    def summary(self, level):
        pooled = self.samples[level]
        return {"checkout": latency_summary(pooled["checkout"]), "checkin": latency_summary(pooled["checkin"]),
                "errors": pooled["errors"]}

    def stop(self):
        self.under_test.close()


def https_settings(files):
    """The staff gateway's settings to serve the run's certificate; the clients of this process trust its CA
    (http_session reads REQUESTS_CA_BUNDLE)."""
    os.environ["REQUESTS_CA_BUNDLE"] = str(files["ca"])
    return {"SHIORI_TLS_CERT": str(files["cert"]), "SHIORI_TLS_KEY": str(files["key"])}


def tls_everywhere(servers, folder, files, stack):
    """A TLS-only broker node and PostgreSQL cluster started for the run (stopped with ``stack``), and what a
    system needs to use them: its broker, the databases' server, its settings."""
    node = stack.enter_context(servers.tls_broker(folder, files))
    cluster = stack.enter_context(servers.tls_postgres(folder, files, fsync=True))
    broker = Broker(node["url"], node["admin_url"])
    postgres = {"host": servers.HOST, "port": cluster["port"],
                "query": f"sslmode=verify-full&sslrootcert={files['ca']}"}
    return broker, postgres, {**https_settings(files), "SHIORI_BROKER_CA": str(files["ca"])}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE_ISSUE_11,
                        help=f"the git revision to compare with (default {BEFORE_ISSUE_11}, before issue 11)")
    parser.add_argument("--clients", default="1,5", help="comma-separated concurrency levels (default 1,5)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per system, level and round (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each system takes per level (default 3)")
    parser.add_argument("--max-pairs", type=int, default=2000, help="at most this many pairs per client and round")
    parser.add_argument("--items-per-client", type=int, default=2)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--https", action="store_true", help="another system: now, its staff gateway on HTTPS")
    parser.add_argument("--tls", action="store_true",
                        help="another system: now, with TLS on every hop (a broker node and cluster of the run's)")
    add_broker_arguments(parser)
    parser.add_argument("--output", help="JSON results (default benchmarks/results/privacy-cost-<database>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the data directories and databases")
    args = parser.parse_args(argv)
    check_broker_arguments(args)
    try:
        args.levels = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes numbers such as 1,5")
    if not args.levels or min(args.levels) < 1 or max(args.levels) > 100:
        parser.error("--clients: each level between 1 and 100")
    if not 0 < args.seconds <= 60 or not 1 <= args.rounds <= 20:
        parser.error("--seconds between 0 and 60, --rounds between 1 and 20")
    return args


def print_comparison(report):
    say("")
    say(f"== check-out before ({report['before']}) and now ({report['now']}), {report['database']}, "
        f"{report['cpus']} CPUs, {report['rounds']} rounds of {report['seconds_per_round']:g} s per system and level ==")
    say(f"{'clients':>7} {'system':>18} | {'checkout p50':>12} {'p95':>7} | {'checkin p50':>11} {'p95':>7} | "
        f"{'samples':>7} {'errors':>6}")
    for level in report["levels"]:
        for name in report["systems"]:
            figures = level[name]
            co, ci = figures["checkout"], figures["checkin"]
            say(f"{level['clients']:>7} {name:>18} | {fmt(co['p50_ms'], 12)} {fmt(co['p95_ms'], 7)} | "
                f"{fmt(ci['p50_ms'], 11)} {fmt(ci['p95_ms'], 7)} | {co['count']:>7} {figures['errors']:>6}")
        for name, delta in level["checkout_p50_over_before_ms"].items():
            say(f"{'':>7} {name + ' - before':>18} | {fmt(delta, 12)} ms at the median check-out")
    before = "a broker user per process" if report["before_provisions"] else \
        "guest on one virtual host, unsigned contexts"
    say(f"(before = {report['before']}: {before}; now = {report['now']}: "
        "a broker user per process, signed and verified contexts, header-less events, borrowers in an erasing store"
        + ("; now+https: the staff gateway on HTTPS" if "now+https" in report["systems"] else "")
        + ("; now+tls: TLS on every hop, on a broker node and cluster of the run's" if "now+tls" in report["systems"]
           else "") + ")")


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()
    old_code = Path(tempfile.mkdtemp(prefix="shiori-bench-code-"))
    tls_folder = Path(tempfile.mkdtemp(prefix="shiori-bench-tls-"))
    tls_folder.chmod(0o711)  # the postgres user reaches the cluster's folder inside
    servers_started = ExitStack()
    now = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    report = {"benchmark": "privacy-cost", "database": args.database, "before": args.before, "now": now.strip(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "rounds": args.rounds, "seconds_per_round": args.seconds, "levels": []}
    guest = GuestVirtualHost(args.broker_url, args.broker_admin_url)
    variants = []
    exit_code = 0
    try:
        source_tree(args.before, old_code)
        report["before_provisions"] = provisions_its_broker(old_code)
        if report["before_provisions"]:
            before_broker = Broker(args.broker_url, args.broker_admin_url)
        else:
            guest.create()
            before_broker = guest
        variants = [Variant("before", old_code, before_broker, args.database, args.keep_data),
                    Variant("now", REPO, Broker(args.broker_url, args.broker_admin_url), args.database,
                            args.keep_data)]
        if args.https or args.tls:
            sys.path.insert(0, str(REPO / "tests"))
            import tls_servers as servers

            files = servers.certificates(tls_folder, (servers.HOST, "127.0.0.1"))
        if args.https:
            variants.append(Variant("now+https", REPO, Broker(args.broker_url, args.broker_admin_url),
                                    args.database, args.keep_data, https_settings(files)))
        if args.tls:
            broker, postgres, settings = tls_everywhere(servers, tls_folder, files, servers_started)
            variants.append(Variant("now+tls", REPO, broker, args.database, args.keep_data, settings, postgres))
        report["systems"] = [variant.name for variant in variants]
        for variant in variants:
            variant.start(args.levels, args.items_per_client)
        for level in args.levels:
            say(f"{level} client(s): {args.rounds} rounds of {args.seconds:g} s each, taking turns ...")
            for _round in range(args.rounds):
                for variant in variants:
                    if stopping.is_set():
                        raise Stop("stopping")
                    variant.run(level, args.seconds, args.max_pairs, stopping)
            figures = {variant.name: variant.summary(level) for variant in variants}
            before = figures["before"]["checkout"]["p50_ms"]
            over = {name: round(figures[name]["checkout"]["p50_ms"] - before, 2) for name in report["systems"][1:]}
            report["levels"].append({"clients": level, **figures, "checkout_p50_over_before_ms": over})
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        for variant in variants:
            variant.stop()
        if not variants:
            guest.delete()
        shutil.rmtree(old_code, ignore_errors=True)
        servers_started.close()
        shutil.rmtree(tls_folder, ignore_errors=True)
    if report["levels"]:
        print_comparison(report)
        output = Path(args.output) if args.output else RESULTS_DIR / f"privacy-cost-{args.database}.json"
        write_report(report, output, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
