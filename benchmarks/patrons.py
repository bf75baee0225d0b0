"""Patrons benchmark: what encryption at rest and the access record cost, in process (no broker).

    .venv/bin/python benchmarks/patrons.py [--database sqlite|postgresql] [--patrons 2000] [--seconds 5]

Builds the patrons service with nameko's ``worker_factory`` on real databases (``shiori.db.make_engine`` and
``create_schema``: SQLite files with the service's pragmas, or throwaway PostgreSQL databases on 127.0.0.1),
and compares, in the same run, four variants on fresh databases holding the same N patrons:

    (a) as shipped: the real PatronVault (AES-256-GCM, data keys in the key store) and the access record;
    (b) no encryption: a pass-through vault defined here, injected as ``vault=``;
    (c) no access record: the service's ``access_record.record`` replaced by a no-op;
    (d) neither.

Every call gets fresh database sessions and a fresh vault, as a nameko worker does (so nothing is served
from a session's identity map or from the vault's cache of opened data keys). The variants are measured in
interleaved rounds, so that drift of the machine (disk, caches, other load) is shared among them.

It reports the latency of ``get_patron``, ``find_patrons`` by card, ``borrower`` and ``register``, the
overhead of (a) over (d), and the throughput of staff log-ins (Argon2) with the raw ``PasswordHasher``
costs. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # as the services run (shiori/commands/serve.py), before a database driver is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import date, datetime, timedelta, timezone  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import argon2  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from nameko.testing.services import worker_factory  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from services.patrons import service as patrons_module  # noqa: E402
from services.patrons.access_record import AccessChain, AccessEntry  # noqa: E402
from services.patrons.models import Base as PatronsBase, Patron  # noqa: E402
from services.patrons.rules import new_card_number  # noqa: E402
from services.patrons.service import PatronsService  # noqa: E402
from services.patrons.vault import DataKey, KeyRing, KeysBase, PatronVault, new_master_key_spec  # noqa: E402
from shiori.db import create_schema, make_engine  # noqa: E402
from shiori.rpc import CallerContext  # noqa: E402
from harness import machine_cpu, postgres_admin, say  # noqa: E402
from figures import latency_summary  # noqa: E402

LOCALHOST = "127.0.0.1"
RESULTS_DIR = HERE / "results"
TENANT = "kaizu"
CALLER = CallerContext({"tenant": TENANT, "actor": "staff:1", "role": "admin", "address": "127.0.0.1",
                        "route": "bench"})
CONFIG = {"CARD_VALIDITY_YEARS": 3, "LOGIN_MAX_FAILURES": 5, "LOGIN_BLOCK_SECONDS": 900}
VARIANTS = (  # key, label, encryption, access record
    ("a", "as shipped", True, True),
    ("b", "no encryption", False, True),
    ("c", "no access record", True, False),
    ("d", "neither", False, False),
)
OPERATIONS = ("get_patron", "find_patrons", "borrower", "register")
WARMUP_CALLS = 20  # per variant and operation, unrecorded
STAFF = {"username": "bench-desk", "password": "a long bench password", "role": "librarian",
         "libraries": ["main"]}

FAMILY = (("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
          ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
          ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("松本", "マツモト"), ("井上", "イノウエ"))
GIVEN = (("花子", "ハナコ"), ("太郎", "タロウ"), ("陽菜", "ヒナ"), ("蓮", "レン"), ("結衣", "ユイ"),
         ("大翔", "ヒロト"), ("美咲", "ミサキ"), ("健一", "ケンイチ"), ("さくら", "サクラ"), ("翔太", "ショウタ"))
TOWNS = ("海津町高須", "海津町馬目", "平田町今尾", "南濃町駒野", "南濃町津屋", "海津町福江")


# --- the stand-ins -----------------------------------------------------------------------------------


class PlainVault:
    """PatronVault's interface without encryption: lookups by the plain value, fields stored as UTF-8."""

    def lookup_hash(self, tenant, kind, value):
        return value

    def new_key(self):
        return "plain"

    def seal(self, key_ref, field, value):
        return None if value is None else str(value).encode()

    def open(self, key_ref, field, blob):
        return None if blob is None else bytes(blob).decode()

    def shred(self, key_ref):
        pass

    def rewrap(self, limit):
        return {"rewrapped": 0, "remaining": 0}


class CatalogStub:
    def get_library(self, code):
        return {"code": "main", "kind": "main"}

    def list_libraries(self):
        return [{"code": "main", "kind": "main"}]


def publish_nothing(*args, **kwargs):
    pass


def record_nothing(session, caller, action, patron_ids, fields):
    pass


@contextmanager
def patched(target, name, value):
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


# --- figures -----------------------------------------------------------------------------------------




def overhead(slow, fast):
    """(ms, %) of ``slow`` over ``fast`` for p50, p95, p99 and mean."""
    result = {}
    for stat in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
        extra = slow[stat] - fast[stat]
        result[stat] = {"ms": round(extra, 3), "percent": round(100 * extra / fast[stat], 1) if fast[stat] else None}
    return result



class Load:
    """How busy the machine was during a phase, and how much of that was this process."""

    def __init__(self):
        self.machine, self.own, self.wall = machine_cpu(), time.process_time(), time.perf_counter()

    def result(self):
        machine, own, wall = machine_cpu(), time.process_time() - self.own, time.perf_counter() - self.wall
        cpus = os.cpu_count() or 1
        busy = None
        if machine and self.machine and machine[1] > self.machine[1]:
            busy = 100 * (machine[0] - self.machine[0]) / (machine[1] - self.machine[1])
        own_share = 100 * own / (wall * cpus)
        return {"seconds": round(wall, 1), "machine_busy_percent": None if busy is None else round(busy, 1),
                "benchmark_process_percent": round(own_share, 1),
                "everything_else_percent": None if busy is None else round(max(busy - own_share, 0), 1),
                "cpus": cpus}


def describe_load(name, load):
    line = (f"  {name}: machine {load['machine_busy_percent']}% busy of {load['cpus']} CPUs, this process "
            f"{load['benchmark_process_percent']}%, everything else {load['everything_else_percent']}%")
    say(line)


# --- data --------------------------------------------------------------------------------------------


def patron_payload(rng, i):
    family, family_kana = rng.choice(FAMILY)
    given, given_kana = rng.choice(GIVEN)
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 75))
    payload = {
        "name": f"{family} {given}", "name_kana": f"{family_kana} {given_kana}", "birth_date": born.isoformat(),
        "sex": rng.choice(("female", "male", "other", "unspecified")),
        "address": f"岐阜県海津市{rng.choice(TOWNS)}{rng.randint(1, 3000)}番地{rng.randint(1, 30)}",
        "phone": f"0584-{50 + i // 10000 % 50:02d}-{i % 10000:04d}",
        "home_library": "main", "category": rng.choice(("adult", "adult", "adult", "child", "student")),
    }
    if rng.random() < 0.5:
        payload["email"] = f"patron{i}@example.jp"
    if rng.random() < 0.2:
        payload["alt_address"] = f"岐阜県大垣市{rng.randint(1, 99)}丁目"
    return payload


def seeded_card_numbers(seed):
    rng = random.Random(seed)
    return lambda: new_card_number(randbelow=rng.randrange)


# --- databases ---------------------------------------------------------------------------------------


class SqliteDatabases:
    """SQLite files (WAL, synchronous=FULL: the service's pragmas) in a temporary folder."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="shiori-bench-patrons-"))

    def urls(self, variant):
        return {"patrons": f"sqlite:///{self.folder}/{variant}-patrons.db",
                "keys": f"sqlite:///{self.folder}/{variant}-keys.db"}

    def describe(self):
        return {"engine": "sqlite", "folder": str(self.folder)}

    def size(self, engine):
        """The database file, after folding the write-ahead log into it."""
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(engine.url.database)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    def close(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresDatabases:
    """Throwaway databases on 127.0.0.1, two per variant (patrons and key store), dropped at the end."""

    def __init__(self, host, port, user="postgres"):
        self.host, self.port, self.user = host, port, user
        self.stem = f"shiori_bench_patrons_{os.getpid()}_{secrets.token_hex(3)}"
        self.created = []

    def _admin(self):
        return postgres_admin(self.host, self.port, self.user)

    def urls(self, variant):
        urls = {}
        connection = self._admin()
        try:
            with connection.cursor() as cursor:
                for part in ("patrons", "keys"):
                    name = f"{self.stem}_{variant}_{part}"
                    cursor.execute(f'CREATE DATABASE "{name}"')
                    self.created.append(name)
                    urls[part] = f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{name}"
                cursor.execute("SELECT version()")
                self.version = cursor.fetchone()[0]
        finally:
            connection.close()
        return urls

    def describe(self):
        return {"engine": "postgresql", "server": f"{self.host}:{self.port}", "version": getattr(self, "version", None)}

    def size(self, engine):
        """The tables with their indexes and TOAST (not the ~7 MB every empty database has)."""
        with engine.connect() as connection:
            return int(connection.scalar(text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")))

    def close(self):
        if not self.created:
            return
        try:
            connection = self._admin()
        except Exception as error:  # noqa: BLE001
            say(f"WARNING: could not drop the databases {self.created}: {error}")
            return
        try:
            with connection.cursor() as cursor:
                for name in reversed(self.created):
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.created = []
        finally:
            connection.close()


# --- one variant -------------------------------------------------------------------------------------


class Variant:
    """The patrons service on its own two databases, with or without encryption and the access record."""

    def __init__(self, key, label, encrypt, record, urls, ring, lookup_key):
        self.key, self.label, self.encrypt, self.record = key, label, encrypt, record
        self.urls = urls
        self.ring, self.lookup_key = ring, lookup_key
        self.patrons_engine = make_engine(urls["patrons"])
        create_schema(self.patrons_engine, PatronsBase.metadata)
        self.keys_engine = make_engine(urls["keys"])
        create_schema(self.keys_engine, KeysBase.metadata)
        # As shiori.db.Database hands them to workers.
        self.patrons_sessions = sessionmaker(self.patrons_engine, expire_on_commit=False)
        self.keys_sessions = sessionmaker(self.keys_engine, expire_on_commit=False)
        self.service = worker_factory(PatronsService, db=None, vault=None, caller=CALLER, config=CONFIG)
        self.service.catalog = CatalogStub()
        self.service.publish = publish_nothing
        self.service.access_record = AccessChain(secrets.token_bytes(32))
        self.patrons = []  # (id, card_number) in registration order
        self.latencies = {operation: [] for operation in OPERATIONS}

    @contextmanager
    def active(self):
        """While this variant's calls run: the access record switched off for (c) and (d)."""
        if self.record:
            yield
        else:
            with patched(self.service.access_record, "record", record_nothing):
                yield

    def call(self, method, *args):
        """One worker's call: fresh sessions and vault, timed from the method's start to its return (the
        sessions are closed afterwards, as nameko's worker_teardown does after the reply)."""
        db = self.patrons_sessions()
        keys = self.keys_sessions() if self.encrypt else None
        self.service.db = db
        self.service.vault = PatronVault(self.ring, self.lookup_key, keys) if self.encrypt else PlainVault()
        try:
            start = time.perf_counter()
            result = getattr(self.service, method)(*args)
            return time.perf_counter() - start, result
        finally:
            db.close()
            if keys is not None:
                keys.close()

    def checks(self, databases):
        """What the variant really did: data keys, access entries, whether the chain is intact, sizes."""
        with self.patrons_sessions() as db, self.keys_sessions() as keys:
            sealed = db.scalar(select(Patron.name_sealed).order_by(Patron.id).limit(1))
            return {
                "patrons": db.scalar(select(func.count()).select_from(Patron)),
                "data_keys": keys.scalar(select(func.count()).select_from(DataKey)),
                "access_entries": db.scalar(select(func.count()).select_from(AccessEntry)),
                "access_chain": self.service.access_record.verify(db, TENANT),
                "name_stored_as_plaintext": sealed is not None and _is_text(sealed),
                "patrons_db_bytes": databases.size(self.patrons_engine),
                "keys_db_bytes": databases.size(self.keys_engine),
            }

    def dispose(self):
        self.patrons_engine.dispose()
        self.keys_engine.dispose()


def _is_text(blob):
    try:
        bytes(blob).decode()
        return True
    except UnicodeDecodeError:
        return False


# --- the phases --------------------------------------------------------------------------------------


def register_patrons(variant, count, seed):
    """The same N patrons (same payloads, same card numbers) in every variant."""
    rng = random.Random(seed)
    with variant.active(), patched(patrons_module, "new_card_number", seeded_card_numbers(seed + 1)):
        started = time.perf_counter()
        for i in range(count):
            _, patron = variant.call("register", patron_payload(rng, i))
            variant.patrons.append((patron["id"], patron["card_number"]))
        elapsed = time.perf_counter() - started
    return {"patrons": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1)}


def operation_args(operation, variant, position, payload_rng, serial):
    if operation == "register":
        return (patron_payload(payload_rng, serial),)
    patron_id, card_number = variant.patrons[position]
    if operation == "get_patron":
        return (patron_id,)
    if operation == "find_patrons":
        return ({"card_number": card_number},)
    return (card_number,)


def check_result(operation, result, variant, position):
    """Guard against measuring an error path: every call must answer the patron asked for."""
    patron_id, card_number = variant.patrons[position] if position is not None else (None, None)
    if operation == "get_patron":
        ok = result["id"] == patron_id and result["card_number"] == card_number
    elif operation == "find_patrons":
        ok = result["total"] == 1 and result["items"][0]["id"] == patron_id
    elif operation == "borrower":
        ok = result["id"] == patron_id
    else:
        ok = bool(result.get("id")) and len(result.get("card_number", "")) == 12
    if not ok:
        raise RuntimeError(f"({variant.key}) {operation} answered something unexpected: {result!r}")


def measure_latency(variants, patron_count, calls, rounds, seed):
    """Interleaved rounds: in each, every variant (in a rotated order) runs calls/rounds of each operation.
    The look-ups pick the same random patrons in every variant."""
    rng = random.Random(seed + 2)
    picks = {operation: [rng.randrange(patron_count) for _ in range(calls)] for operation in OPERATIONS}
    payload_rngs = {variant.key: random.Random(seed + 3) for variant in variants}  # the same new patrons
    serial = {variant.key: patron_count for variant in variants}
    for variant in variants:  # warm-up: connections, statement caches, the code paths
        with variant.active():
            for operation in OPERATIONS:
                for _ in range(WARMUP_CALLS):
                    position = rng.randrange(patron_count)
                    args = operation_args(operation, variant, position, payload_rngs[variant.key],
                                          serial[variant.key])
                    serial[variant.key] += operation == "register"
                    variant.call(operation, *args)
    bounds = [calls * r // rounds for r in range(rounds + 1)]
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in order:
            with variant.active():
                for operation in OPERATIONS:
                    for k in range(bounds[r], bounds[r + 1]):
                        position = None if operation == "register" else picks[operation][k]
                        args = operation_args(operation, variant, position, payload_rngs[variant.key],
                                              serial[variant.key])
                        serial[variant.key] += operation == "register"
                        elapsed, result = variant.call(operation, *args)
                        check_result(operation, result, variant, position)
                        variant.latencies[operation].append(elapsed)
        say(f"  round {r + 1}/{rounds} done")


def measure_logins(variant, seconds):
    """authenticate_staff with the right password, one after another, for ``seconds``."""
    variant.call("ensure_staff_account", dict(STAFF))
    credentials = {"username": STAFF["username"], "password": STAFF["password"]}
    for _ in range(3):  # warm-up
        variant.call("authenticate_staff", credentials)
    latencies = []
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall_start < seconds:
        elapsed, account = variant.call("authenticate_staff", credentials)
        if account["username"] != STAFF["username"]:
            raise RuntimeError(f"authenticate_staff answered {account!r}")
        latencies.append(elapsed)
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    with variant.patrons_sessions() as db:
        stored = db.scalar(text("SELECT password_hash FROM staff_accounts WHERE username = :u"),
                           {"u": STAFF["username"]})
    return {
        "logins": len(latencies), "seconds": round(wall, 2), "logins_per_second": round(len(latencies) / wall, 2),
        "ms_per_login": round(1000 * wall / len(latencies), 2), "latency": latency_summary(latencies, digits=3),
        "cpu_ms_per_login": round(1000 * cpu / len(latencies), 2),
        "stored_hash_parameters": _parameters(argon2.extract_parameters(stored)),
    }


def measure_argon2(seconds):
    """The raw PasswordHasher (defaults, as the service builds it): verify and hash, one after another."""
    hasher = PasswordHasher()
    password = STAFF["password"]
    stored = hasher.hash(password)
    result = {"parameters": _parameters(hasher),
              "service_hasher_parameters": _parameters(patrons_module.password_hasher),
              "argon2_cffi": version("argon2-cffi"), "argon2_cffi_bindings": version("argon2-cffi-bindings")}
    for name, operation in (("verify", lambda: hasher.verify(stored, password)),
                            ("hash", lambda: hasher.hash(password))):
        operation()  # warm-up
        latencies = []
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall_start < seconds and len(latencies) < 1000:
            start = time.perf_counter()
            operation()
            latencies.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu_start
        result[name] = {"calls": len(latencies), "latency": latency_summary(latencies, digits=3),
                        "cpu_ms_per_call": round(1000 * cpu / len(latencies), 2),
                        "per_second": round(len(latencies) / (time.perf_counter() - wall_start), 2)}
    return result


def _parameters(source):
    return {"type": source.type.name, "time_cost": source.time_cost, "memory_cost_kib": source.memory_cost,
            "parallelism": source.parallelism, "hash_len": source.hash_len, "salt_len": source.salt_len}


# --- output ------------------------------------------------------------------------------------------


def print_table(results, patron_count, database):
    keys = [key for key, *_ in VARIANTS]
    say()
    say(f"Latency in ms, {database}, {patron_count} patrons, in process (no broker); "
        f"{results['calls_per_operation']} calls per operation and variant")
    header = f"{'operation':<14}{'':>5}" + "".join(f"{f'({k}) {label}':>22}" for k, label, *_ in VARIANTS) \
        + f"{'a-d ms':>10}{'a-d %':>9}"
    say(header)
    say("-" * len(header))
    for operation in OPERATIONS:
        for stat in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
            figures = [results["variants"][k]["latency"][operation][stat] for k in keys]
            extra = results["overhead_a_over_d"][operation][stat]
            name = operation if stat == "p50_ms" else ""
            say(f"{name:<14}{stat[:-3]:>5}" + "".join(f"{value:>22.3f}" for value in figures)
                + f"{extra['ms']:>+10.3f}{extra['percent']:>+8.1f}%")
    say()
    say("Attribution at p50 (ms, and % of the variant without it):")
    say(f"{'operation':<14}{'encryption (a-b)':>22}{'access record (a-c)':>24}{'both (a-d)':>20}"
        f"{'encryption alone (c-d)':>26}{'record alone (b-d)':>22}")
    for operation in OPERATIONS:
        cells = []
        for slow, fast in (("a", "b"), ("a", "c"), ("a", "d"), ("c", "d"), ("b", "d")):
            part = results["attribution"][f"{slow}-{fast}"][operation]["p50_ms"]
            cells.append(f"{part['ms']:+.3f} ({part['percent']:+.0f}%)")
        say(f"{operation:<14}{cells[0]:>22}{cells[1]:>24}{cells[2]:>20}{cells[3]:>26}{cells[4]:>22}")


def print_logins(login, raw):
    parameters = raw["parameters"]
    say()
    say(f"Argon2 (argon2-cffi {raw['argon2_cffi']}, PasswordHasher() defaults): {parameters['type']}, "
        f"time_cost={parameters['time_cost']}, memory_cost={parameters['memory_cost_kib']} KiB "
        f"({parameters['memory_cost_kib'] / 1024:.0f} MiB), parallelism={parameters['parallelism']}, "
        f"hash_len={parameters['hash_len']}, salt_len={parameters['salt_len']}")
    if raw["service_hasher_parameters"] != parameters:
        say(f"  NOTE: the service's hasher differs: {raw['service_hasher_parameters']}")
    for name in ("verify", "hash"):
        figures = raw[name]
        say(f"  raw {name:<7} {figures['calls']:>4} calls: p50 {figures['latency']['p50_ms']:.1f} ms, "
            f"p95 {figures['latency']['p95_ms']:.1f} ms, mean {figures['latency']['mean_ms']:.1f} ms, "
            f"CPU {figures['cpu_ms_per_call']:.1f} ms per call, {figures['per_second']:.1f}/s")
    say(f"authenticate_staff (right password, sequential): {login['logins']} log-ins in {login['seconds']} s = "
        f"{login['logins_per_second']:.2f} log-ins/s, {login['ms_per_login']:.1f} ms per log-in "
        f"(p50 {login['latency']['p50_ms']:.1f}, p95 {login['latency']['p95_ms']:.1f}, "
        f"p99 {login['latency']['p99_ms']:.1f} ms), CPU {login['cpu_ms_per_login']:.1f} ms per log-in")
    verify_mean, login_mean = raw["verify"]["latency"]["mean_ms"], login["latency"]["mean_ms"]
    say(f"  raw Argon2 verify is {100 * verify_mean / login_mean:.0f}% of a log-in's mean time; the rest "
        f"({login_mean - verify_mean:+.1f} ms) is the rest of the call (throttle rows, the account, commits)")


# --- main --------------------------------------------------------------------------------------------


def code_version():
    """The commit measured, and whether the patrons service or the shared code had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "services/patrons", "shiori"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        return {"commit": commit or None, "uncommitted": [line[3:] for line in dirty if line.strip()]}
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--patrons", type=int, default=2000, help="patrons registered in every variant first")
    parser.add_argument("--calls", type=int, default=500, help="timed calls per operation and variant")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the calls are spread over")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to measure log-ins")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON file (default benchmarks/results/patrons-<database>.json)")
    args = parser.parse_args(argv)
    if args.pg_host not in (LOCALHOST, "localhost"):
        parser.error(f"--pg-host must be {LOCALHOST}: this benchmark only targets localhost")
    if args.patrons < 1 or args.calls < args.rounds or args.rounds < 1:
        parser.error("--patrons must be positive and --calls at least --rounds")
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the databases are still removed
    output = Path(args.output) if args.output else RESULTS_DIR / f"patrons-{args.database}.json"
    databases = SqliteDatabases() if args.database == "sqlite" else PostgresDatabases(args.pg_host, args.pg_port)
    ring = KeyRing(new_master_key_spec("bench"))
    lookup_key = secrets.token_bytes(32)
    variants = []
    started = time.perf_counter()
    loads = {}
    started_at = datetime.now(timezone.utc).isoformat()
    try:
        idle = Load()
        time.sleep(1)
        loads["before"] = idle.result()
        if (loads["before"]["machine_busy_percent"] or 0) > 25:
            say(f"WARNING: the machine is already {loads['before']['machine_busy_percent']}% busy before the run: "
                "other work shares the CPUs (and the database server), the figures will be noisier")
        say(f"Patrons benchmark on {args.database}: {args.patrons} patrons per variant, {args.calls} calls per "
            f"operation in {args.rounds} interleaved rounds, log-ins for {args.seconds:g} s")
        setup = {}
        load = Load()
        for key, label, encrypt, record in VARIANTS:
            variant = Variant(key, label, encrypt, record, databases.urls(key), ring, lookup_key)
            variants.append(variant)
            setup[key] = register_patrons(variant, args.patrons, args.seed)
            say(f"  ({key}) {label}: registered {args.patrons} patrons in {setup[key]['seconds']} s "
                f"({setup[key]['per_second']}/s)")
        cards = {key: [card for _, card in v.patrons] for key, v in zip(setup, variants)}
        if any(cards[key] != cards["a"] for key in cards):
            raise RuntimeError("the variants did not get the same card numbers")
        loads["setup"] = load.result()
        say("Latency (interleaved rounds):")
        load = Load()
        measure_latency(variants, args.patrons, args.calls, args.rounds, args.seed)
        loads["latency"] = load.result()
        results = {
            "benchmark": "patrons", "database": databases.describe(), "patrons": args.patrons,
            "calls_per_operation": args.calls, "rounds": args.rounds, "warmup_calls": WARMUP_CALLS,
            "started_at": started_at, "code": code_version(),
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count(), "sqlalchemy": version("SQLAlchemy"),
                        "cryptography": version("cryptography"), "nameko": version("nameko")},
            "variants": {}, "setup": setup,
        }
        for variant in variants:
            results["variants"][variant.key] = {
                "label": variant.label, "encryption": variant.encrypt, "access_record": variant.record,
                "latency": {operation: latency_summary(variant.latencies[operation], digits=3) for operation in OPERATIONS},
                "checks": variant.checks(databases),
            }
        latency = {key: results["variants"][key]["latency"] for key in results["variants"]}
        results["attribution"] = {
            f"{slow}-{fast}": {operation: overhead(latency[slow][operation], latency[fast][operation])
                               for operation in OPERATIONS}
            for slow, fast in (("a", "b"), ("a", "c"), ("a", "d"), ("c", "d"), ("b", "d"))
        }
        results["overhead_a_over_d"] = results["attribution"]["a-d"]
        print_table(results, args.patrons, args.database)
        say()
        say("Checks after the run (what each variant really stored):")
        for key, figures in results["variants"].items():
            checks = figures["checks"]
            say(f"  ({key}) {checks['patrons']} patrons, {checks['data_keys']} data keys, "
                f"{checks['access_entries']} access entries (chain intact: {checks['access_chain']['intact']}), "
                f"names stored as plaintext: {checks['name_stored_as_plaintext']}, "
                f"patrons db {checks['patrons_db_bytes'] / 1e6:.1f} MB, keys db {checks['keys_db_bytes'] / 1e6:.2f} MB")
        say()
        say("Log-ins:")
        load = Load()
        results["argon2"] = measure_argon2(min(args.seconds, 3.0))
        results["login"] = measure_logins(variants[0], args.seconds)
        loads["logins"] = load.result()
        print_logins(results["login"], results["argon2"])
        results["load"] = loads
        say()
        say("Machine load per phase (on postgresql, the server's work for this run counts as 'everything else'):")
        for name, figures in loads.items():
            describe_load(name, figures)
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
        say()
        say(f"Total {results['total_seconds']} s. JSON written to {output}")
    finally:
        for variant in variants:
            variant.dispose()
        databases.close()


if __name__ == "__main__":
    main()
