"""Operators' commands against running services: the first run of a tenant (the tenant itself, its first
admin account and, unless SHIORI_DEMO=0, demo data; safe to run again, and an admin password is shown only
when it was created), and bulk imports of bibliographic records."""
import json
import os
import secrets
import sys
import time
from contextlib import contextmanager
from itertools import cycle

from shiori.broker import OPERATOR as OPERATOR_PRINCIPAL, ScopedStandaloneReplyListener
from shiori.context import ContextSigner
from shiori.commands.deployment import operator_environment
from shiori.roles import OPERATOR
from shiori.tls import with_broker_tls

DEMO_LIBRARIES = [
    {"code": "main", "name": "海津市図書館", "kind": "main"},
    {"code": "hirata", "name": "海津市図書館 平田分館", "kind": "branch"},
    {"code": "nanno", "name": "海津市図書館 南濃分館", "kind": "branch"},
]
# Invented residents: no real person's data is ever shipped.
DEMO_PATRONS = [
    {"name": "海津 花子", "name_kana": "カイヅ ハナコ", "birth_date": "1985-04-12", "sex": "female",
     "address": "岐阜県海津市海津町高須515", "phone": "0584-00-0001", "email": "hanako@example.jp",
     "home_library": "main", "category": "adult"},
    {"name": "高須 太郎", "name_kana": "タカス タロウ", "birth_date": "2014-09-03", "sex": "male",
     "address": "岐阜県海津市海津町高須1-2", "phone": "0584-00-0002", "home_library": "main", "category": "child"},
    {"name": "平田 美咲", "name_kana": "ヒラタ ミサキ", "birth_date": "2006-01-20", "sex": "female",
     "address": "愛知県名古屋市千種区不老町1", "alt_address": "岐阜県海津市平田町今尾3", "phone": "090-0000-0003",
     "home_library": "hirata", "category": "student"},
    {"name": "南濃 健一", "name_kana": "ナンノウ ケンイチ", "birth_date": "1950-11-30", "sex": "male",
     "address": "岐阜県海津市南濃町駒野4", "phone": "0584-00-0004", "home_library": "nanno", "category": "adult"},
]
BATCH = 1000


def operator_context(tenant, signing_key):
    """Who the operators' commands call as: the vendor's operator, for one tenant, signed with its key."""
    return ContextSigner(OPERATOR_PRINCIPAL, signing_key).sign({"tenant": tenant, "actor": "operator", "role": OPERATOR})


@contextmanager
def operator_rpc(tenant, timeout, environ=None):
    """RPC to the running services as the operator of ``tenant``, with the operator's broker user."""
    from nameko.standalone.rpc import ClusterRpcProxy

    environ = operator_environment(os.environ if environ is None else environ)
    config = with_broker_tls({"AMQP_URI": environ["AMQP_URI"], "BROKER_PRINCIPAL": OPERATOR_PRINCIPAL}, environ)
    with ClusterRpcProxy(config, context_data=operator_context(tenant, environ["SHIORI_CONTEXT_SIGNING_KEY"]),
                         timeout=timeout, reply_listener_cls=ScopedStandaloneReplyListener) as rpc:
        yield rpc


def bootstrap(environ=None, out=print):
    environ = os.environ if environ is None else environ
    tenant = environ.get("SHIORI_TENANT", "kaizu")
    with operator_rpc(tenant, 120, environ) as rpc:
        wait_for(rpc, ("catalog", "patrons"))
        rpc.catalog.ensure_tenant({"code": tenant, "name": environ.get("SHIORI_TENANT_NAME", "海津市")})
        ensure_admin(rpc, environ, out)
        if environ.get("SHIORI_DEMO", "1") != "0":
            load_demo(rpc, out)


def wait_for(rpc, service_names, seconds=120):
    """Until each service has declared its queue (a fresh broker knows none of them yet) and answers."""
    from nameko.exceptions import UnknownService

    deadline = time.monotonic() + seconds
    for name in service_names:
        while True:
            try:
                getattr(rpc, name).health()
                break
            except UnknownService:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def wait_for_libraries(rpc, codes, seconds=30):
    """Until the patrons service has heard of these libraries (the catalogue's ``library_added``, which it
    keeps a projection of), so that patrons can be registered there."""
    deadline = time.monotonic() + seconds
    while not set(codes) <= set(rpc.patrons.known_libraries()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the patrons service has not heard of the libraries {sorted(codes)}")
        time.sleep(0.1)


def ensure_admin(rpc, environ, out):
    username = environ.get("SHIORI_ADMIN_USER") or "admin"
    password = environ.get("SHIORI_ADMIN_PASSWORD")
    generated = not password
    if generated:
        password = secrets.token_urlsafe(18)
    account = rpc.patrons.ensure_staff_account(
        {"username": username, "password": password, "role": "admin", "libraries": []}
    )
    if not account["created"]:
        out(f"staff account {username!r} exists already (its password is unchanged)")
    elif generated:
        out(f"created staff account {username!r} with password: {password}")
        out("  (shown this once; set SHIORI_ADMIN_PASSWORD to choose it yourself)")
    else:
        out(f"created staff account {username!r} with the password from SHIORI_ADMIN_PASSWORD")


def load_demo(rpc, out):
    from services.catalog.aozora import open_aozora_index, read_aozora_works

    if rpc.catalog.list_libraries():
        out("demo data: the tenant has libraries already; nothing loaded")
        return
    for library in DEMO_LIBRARIES:
        rpc.catalog.add_library(library)
    wait_for_libraries(rpc, [library["code"] for library in DEMO_LIBRARIES])
    for patron in DEMO_PATRONS:
        rpc.patrons.register(patron)
    works = read_aozora_works(open_aozora_index())
    work_ids = []
    for start in range(0, len(works), BATCH):
        work_ids += rpc.catalog.import_works(works[start:start + BATCH])["work_ids"]
    libraries = cycle(library["code"] for library in DEMO_LIBRARIES)
    items = [
        {"barcode": f"K{number:08d}", "work_id": work_id, "library": next(libraries),
         "shelf_location": "一般書架"}
        for number, work_id in enumerate(work_ids, start=1)
    ]
    for start in range(0, len(items), BATCH):
        rpc.catalog.add_items(items[start:start + BATCH])
    out(f"demo data: {len(DEMO_LIBRARIES)} libraries, {len(DEMO_PATRONS)} patrons, "
        f"{len(work_ids)} works from the Aozora Bunko index, {len(items)} copies")


def import_records(stream, file_format, tenant, environ=None):
    """Import a file into the tenant's catalogue, showing progress on stderr; answers the exit status."""
    from services.catalog.imports import import_file
    from shiori.imports import IN_FLIGHT

    def progress(summary, rate):
        done = summary["added"] + summary["updated"] + summary["rejected"]
        print(f"\r{done:,} records: {summary['added']:,} added, {summary['updated']:,} updated, "
              f"{summary['rejected']:,} rejected ({rate:,.0f} records/s)", end="", file=sys.stderr, flush=True)

    with operator_rpc(tenant, 300, environ) as rpc:
        wait_for(rpc, ("catalog",))
        summary = import_file(stream, file_format, rpc.catalog.import_works, progress,
                              in_flight=int((environ or os.environ).get("SHIORI_IMPORT_IN_FLIGHT", IN_FLIGHT)))
    print(file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0


def verify_access_record(tenant, environ=None):
    """Check the tenant's access record; exit status 0 when intact, 1 when an entry was changed or removed."""
    with operator_rpc(tenant, 600, environ) as rpc:
        result = rpc.patrons.verify_access_record()
    print(json.dumps(result))
    return 0 if result["intact"] else 1


def rewrap_data_keys(environ=None):
    """After a new master key was put first in SHIORI_PATRONS_MASTER_KEYS and the patrons service restarted:
    re-wrap every data key under it, in batches, while the service keeps serving. The old master key can
    leave the configuration once this reports none remaining."""
    environ = os.environ if environ is None else environ
    done = 0
    with operator_rpc(environ.get("SHIORI_TENANT", "kaizu"), 300, environ) as rpc:
        while True:
            result = rpc.patrons.rewrap_data_keys(1000)
            done += result["rewrapped"]
            print(f"re-wrapped {done:,} data keys; {result['remaining']:,} remaining", file=sys.stderr, flush=True)
            if result["remaining"] == 0:
                return 0
            if result["rewrapped"] == 0:
                print("some data keys are under a master key the service does not have", file=sys.stderr)
                return 1


def apply_retention(tenant, dry_run, environ=None):
    """Delete (or, dry, count) the tenant's patrons unused for the retention period, as the hourly pass does
    (the loans service erases those with nothing on loan); prints the counts."""
    with operator_rpc(tenant, 600, environ) as rpc:
        print(json.dumps(rpc.loans.apply_retention(dry_run)))
    return 0

