"""Catalogue benchmark: bulk import of a large synthetic catalogue, index size, and search latency.

    .venv/bin/python benchmarks/catalogue.py [--works 1000000] [--database sqlite|postgresql] [--queries 200]

Starts the whole system (``python -m shiori run``, SHIORI_DEMO=0) with fresh databases on a throwaway
RabbitMQ virtual host, through benchmarks/harness.py as every benchmark does. Builds a deterministic
catalogue of N works composed from the real Aozora Bunko index shipped with the catalog service (real titles
combined with each other, volume numbers and editions, real authors and translators, real publishers, random
valid ISBN-13s, NDC classes), imports it with ``catalog.import_works`` in the import command's batches and gives
a share of the works one copy (``catalog.add_items``). Reports the import rate, the size of the index and the catalog
service's memory. Then measures search latency through the gateway (``GET /api/v1/search``) for a fixed
query mix drawn from the same data, per class of query. Everything it starts is stopped and removed at the
end, also on Ctrl-C and on errors. Only 127.0.0.1 is used. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

eventlet.monkey_patch()  # before nameko, kombu, requests or psycopg2 are imported

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter, deque  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

import requests  # noqa: E402

from harness import (  # noqa: E402
    LOCALHOST, TENANT, Broker, Stop, SystemUnderTest, add_broker_arguments, check_broker_arguments, cpu_seconds,
    ended_early, free_port, http_session, machine_cpu, say, stop_main_on_signals, write_report,
)
from figures import latency_summary  # noqa: E402
from shiori.commands.calls import operator_rpc  # noqa: E402
from services.catalog.aozora import open_aozora_index, read_aozora_works  # noqa: E402
from shiori.imports import BATCH_SIZE, IN_FLIGHT  # noqa: E402
from services.catalog.rules import _isbn13_check  # noqa: E402
from services.catalog.text import fold, reading  # noqa: E402

RESULTS_DIR = HERE / "results"
PAGE_BYTES_BUDGET = 100_000  # the search page with its stylesheet and scripts, before compression (issue 13)
LIBRARIES = (
    {"code": "bench-main", "name": "ベンチ中央図書館", "kind": "main"},
    {"code": "bench-east", "name": "ベンチ東分館", "kind": "branch"},
    {"code": "bench-school", "name": "ベンチ学校図書館", "kind": "school"},
)
# Who the benchmark calls as: the vendor's operator role, which bulk loads use (shiori/roles.py).
DEFAULT_RPC_TIMEOUT = 5.0  # what the services use when SHIORI_RPC_TIMEOUT is not set
KANJI = re.compile(r"[\u4e00-\u9fff]")
KANJI_RUN = re.compile(r"[\u4e00-\u9fff]{2,4}")
VOLUMES = ("上", "下", "上巻", "下巻", "中巻", "前編", "後編", "続", "全", "第一部", "第二部", "第三部")
EDITIONS = ("新装版", "改版", "改訂版", "決定版", "愛蔵版", "文庫版", "普及版", "完全版", "新訳", "注釈版")
# NDC classes with rough weights: mostly literature (this is Aozora), some of everything else.
NDC_LITERATURE = (("913.6", 30), ("913.8", 4), ("914.6", 10), ("911.56", 4), ("911.16", 2), ("912.6", 3),
                  ("913.4", 2), ("918.6", 2), ("910.26", 3), ("913.7", 2))
NDC_TRANSLATED = (("933.6", 8), ("933.7", 3), ("943.6", 3), ("953.6", 3), ("983", 3), ("923.7", 1), ("973", 1))
NDC_OTHER = (("002", 1), ("104", 1), ("159", 2), ("210.6", 2), ("281.04", 1), ("289.1", 2), ("304", 1),
             ("361.4", 1), ("370.4", 1), ("380.4", 1), ("404", 1), ("440.4", 1), ("490.4", 1), ("596", 2),
             ("645.7", 1), ("702.1", 1), ("726.1", 2), ("760.4", 1), ("780.4", 1), ("814", 1))
# Words that a catalogue of Aozora titles and people does not hold (checked against the base data too).
NO_HIT_WORDS = ("量子コンピュータ", "スマートフォン", "ブロックチェーン", "機械学習入門", "クラウドネイティブ",
                "ｘｙｚｚｙ", "深層強化学習", "半導体露光装置", "サブスクリプション", "ドローン空撮")


# --- the synthetic catalogue -----------------------------------------------------------------------


def weighted(pairs):
    values, weights = zip(*pairs)
    return list(values), list(weights)


def isbn13(body12):
    return body12 + _isbn13_check(body12)


def hyphenated(isbn):
    """978-4-XXXX-XXXX-C (the real split depends on the publisher's range; hyphens are only dropped anyway)."""
    return f"{isbn[:3]}-{isbn[3]}-{isbn[4:8]}-{isbn[8:12]}-{isbn[12]}"


def source_books():
    """底本名 (the printed book a text was taken from) per Aozora work id: a real subtitle for some works."""
    books = {}
    for row in csv.DictReader(open_aozora_index()):
        name = row["底本名"].strip()
        if name and name != row["作品名"].strip():
            books.setdefault(f"aozora:{row['作品ID'].strip()}", name)
    return books


class Catalogue:
    """Deterministic work records composed from the real Aozora index. ``records()`` yields (i, record)."""

    def __init__(self, seed):
        self.base = sorted(read_aozora_works(open_aozora_index()), key=lambda work: work["source_id"])
        self.books = source_books()
        self.seed = seed
        names = sorted({author["name"] for work in self.base for author in work["authors"]})
        self.translators = sorted({author["name"] for work in self.base for author in work["authors"]
                                   if author["role"] == "translator"})
        split = [name.split(" ", 1) for name in names if name.count(" ") == 1 and KANJI.search(name)]
        self.family_names = sorted({family for family, _given in split})
        self.given_names = sorted({given for _family, given in split})
        self.publishers = sorted({work["publisher"] for work in self.base if work["publisher"]})
        self.fragments = sorted({fragment for work in self.base for fragment in [_fragment(work["title"])]
                                 if fragment})
        self.ndc_literature = weighted(NDC_LITERATURE)
        self.ndc_translated = weighted(NDC_TRANSLATED)
        self.ndc_other = weighted(NDC_OTHER)

    def records(self, count, copy_share):
        """(i, record, has_copy) for i in 0..count-1. The first len(base) records are the real works as
        they are (each real title once), then composed ones."""
        rng = random.Random(self.seed)
        base_count = len(self.base)
        for i in range(count):
            if i < base_count:
                work = self.base[i]
                title, subtitle = work["title"], None
            else:
                work = self.base[rng.randrange(base_count)]
                title, subtitle = self._compose(rng, work)
            authors = [dict(author) for author in work["authors"]]
            if i >= base_count and authors and rng.random() < 0.25:
                authors[0]["name"] = f"{rng.choice(self.family_names)} {rng.choice(self.given_names)}"
            if rng.random() < 0.03:
                authors.append({"name": rng.choice(self.translators), "role": "translator"})
            publisher = work["publisher"] if rng.random() < 0.7 else rng.choice(self.publishers)
            year = work["published_year"] if work["published_year"] and rng.random() < 0.5 \
                else rng.randint(1950, 2024)
            isbn = None
            if rng.random() < 0.6:  # unique: i * 7919 is a bijection modulo 10**8
                isbn = isbn13(f"9784{(i * 7919 + 12345) % 10 ** 8:08d}")
            if rng.random() < 0.1:
                ndc = rng.choices(*self.ndc_other)[0]
            elif any(author["role"] == "translator" for author in authors):
                ndc = rng.choices(*self.ndc_translated)[0]
            else:
                ndc = rng.choices(*self.ndc_literature)[0]
            record = {"title": title, "authors": authors, "publisher": publisher, "published_year": year,
                      "isbn": isbn, "ndc": ndc, "source_id": f"bench:{i:07d}"}
            if subtitle:
                record["subtitle"] = subtitle
            yield i, record, rng.random() < copy_share

    def _compose(self, rng, work):
        """A realistic, mostly unique title from a real one: with a fragment of another title, a volume, an
        edition, or the real source book as subtitle."""
        title = work["title"]
        form = rng.random()
        if form < 0.45:
            return f"{title} {rng.choice(self.fragments)}", None
        if form < 0.70:
            volume = rng.choice(VOLUMES)
            if volume in ("続", "全") or rng.random() < 0.4:
                volume = f"第{rng.randint(1, 30)}巻" if volume != "続" else f"続{rng.choice(('', '々', '編'))}"
            return f"{title} {volume}", None
        if form < 0.85:
            return f"{title} {rng.choice(EDITIONS)}", rng.choice(self.fragments) if rng.random() < 0.5 else None
        book = self.books.get(work["source_id"]) or self.books.get(rng.choice(self.base)["source_id"])
        return f"{title} {rng.randint(1, 99)}", book


def _fragment(title):
    """The first word of a title, at most 8 characters (a fragment that reads naturally after another title)."""
    first = re.split(r"[\s　・、。「」『』（）()――…]+", title.strip())[0]
    return first[:8] if len(first) >= 2 else None


# --- the query mix -----------------------------------------------------------------------------------


def query_mix(catalogue, isbn_samples, seed):
    """{class: [(label, params)]}: a fixed, seeded mix drawn from the real data."""
    rng = random.Random(seed + 1)
    base = catalogue.base
    titles = [work["title"] for work in base]
    kanji_titles = Counter(char for title in titles for char in set(KANJI.findall(title)))
    ranked = [char for char, _count in kanji_titles.most_common()]
    one_char = [char for char in ("猫", "桜", "雪") if kanji_titles[char]]
    one_char += rng.sample([char for char in ranked[30:250] if char not in one_char], 7)

    bigrams = Counter(pair for title in titles for pair in
                      {a + b for a, b in zip(title, title[1:]) if KANJI.match(a) and KANJI.match(b)})
    two_char = ["夏目", "銀河"]
    two_char += rng.sample(sorted(pair for pair, count in bigrams.items() if 3 <= count <= 40 and pair not in two_char), 8)

    # A kanji word of a real title, as its reading in hiragana: only words read the same alone as within
    # their title (the index holds the generated reading of the whole title).
    runs = sorted({(run, title) for title in titles for run in KANJI_RUN.findall(title)})
    readings = ["なつめそうせき", "みやざわけんじ"]
    for run, title in rng.sample(runs, 200):
        spoken = reading(run)
        if (len(spoken) >= 3 and spoken not in readings and re.fullmatch(r"[\u3041-\u309f]+", spoken)
                and spoken in reading(title)):
            readings.append(spoken)
        if len(readings) == 10:
            break

    works_per_author = Counter(author["name"] for work in base for author in work["authors"]
                               if author["role"] == "author" and " " in author["name"])
    prolific = sorted(name for name, count in works_per_author.items() if count >= 20)
    authors = ["夏目 漱石", "宮沢 賢治"] + rng.sample([name for name in prolific if name not in ("夏目 漱石", "宮沢 賢治")], 8)
    author_queries = [name if position % 2 == 0 else name.replace(" ", "") for position, name in enumerate(authors)]

    multi = ["夏目漱石\u3000こころ", "宮沢賢治\u3000銀河"]
    by_author = {}
    for work in base:
        for author in work["authors"]:
            if author["name"] in prolific:
                by_author.setdefault(author["name"], []).append(work["title"])
    for name in rng.sample(prolific, 16):
        word = _fragment(rng.choice(by_author[name]))
        if word:
            family = name.split(" ")[0]
            multi.append(f"{family if rng.random() < 0.5 else name.replace(' ', '')}\u3000{word[:4]}")
        if len(multi) == 10:
            break

    base_text = "\x1f".join(fold(title) for title in titles) + "\x1f".join(
        fold(author["name"]) for work in base for author in work["authors"])
    no_hit = [word for word in NO_HIT_WORDS if fold(word) not in base_text]

    isbns = [hyphenated(isbn) for isbn in rng.sample(isbn_samples, min(10, len(isbn_samples)))]
    return {
        "1-char": [(q, {"q": q}) for q in one_char],
        "1-char-common": [("の", {"q": "の"})],
        "2-char": [(q, {"q": q}) for q in two_char],
        "reading": [(q, {"q": q}) for q in readings],
        "author": [(f"author={q}", {"author": q}) for q in author_queries],
        "isbn": [(f"isbn={q}", {"isbn": q}) for q in isbns],
        "multi-word": [(q, {"q": q}) for q in multi],
        "no-hit": [(q, {"q": q}) for q in no_hit],
    }


# --- measurements ------------------------------------------------------------------------------------


def proc_status(pid):
    """VmRSS and VmHWM (peak) in MiB from /proc/<pid>/status."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return found


def catalog_status(pids):
    """VmRSS and VmHWM of the catalogue's processes added up (MiB), and how many there are."""
    found = {"processes": len(pids)}
    for status in map(proc_status, pids):
        for key, value in status.items():
            found[key] = round(found.get(key, 0) + value, 1)
    return found


def mib(size):
    return None if size is None else round(size / 2 ** 20, 1)


def sqlite_sizes(data_dir):
    path = data_dir / "catalog.db"
    sizes = {"catalog.db": mib(path.stat().st_size) if path.exists() else None}
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{path}{suffix}")
        sizes[f"catalog.db{suffix}"] = mib(extra.stat().st_size) if extra.exists() else 0.0
    try:  # per table and index, read-only, while the service keeps the database open
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        finally:
            connection.close()
        sizes["objects"] = {name: mib(size) for name, size in rows if size and size >= 2 ** 20}
    except sqlite3.Error as error:
        sizes["objects_error"] = str(error)
    return sizes


def postgres_sizes(databases):
    import psycopg2

    connection = psycopg2.connect(host=databases.host, port=databases.port, user=databases.user,
                                  dbname=databases.names["catalog"], connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            sizes = {}
            for table in ("works", "work_grams", "people", "contributors", "publishers", "items"):
                cursor.execute("SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s)",
                               (table, table, table))
                total, heap, indexes = cursor.fetchone()
                sizes[table] = {"total": mib(total), "table": mib(heap), "indexes": mib(indexes)}
            cursor.execute("SELECT pg_database_size(current_database())")
            sizes["database"] = mib(cursor.fetchone()[0])
            sizes["rows"] = {}
            for table in ("works", "people", "contributors", "items"):
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                sizes["rows"][table] = cursor.fetchone()[0]
        return sizes
    finally:
        connection.close()


class Analyzer:
    """Table statistics and visibility maps for the catalogue's PostgreSQL database. A server with autovacuum
    on re-analyzes a table once it has grown by 10% (autovacuum_analyze_scale_factor) and vacuums it after
    inserts (autovacuum_vacuum_insert_*), which sets the visibility map that index-only scans need. With it
    off (as on some test machines) nothing ever does: the planner keeps its empty-table guesses, plans degrade
    as the tables grow, and every gram lookup visits the heap. Then this emulates it: ANALYZE whenever the
    works have grown by 10%, and VACUUM (ANALYZE) once the import is done (run in any case, so that searches
    meet the state autovacuum reaches within minutes of a bulk load). Its time is not counted as import time."""

    def __init__(self, databases, mode):
        self.databases, self.mode = databases, mode
        self.autovacuum = None
        self.emulate = False
        self.analyzed_at = 0
        self.runs, self.seconds = 0, 0.0
        if databases is not None and mode != "off":
            self.autovacuum = self.query("SHOW autovacuum")[0][0] == "on"
            self.emulate = not self.autovacuum

    def query(self, sql):
        """Rows of one statement on the catalogue's database, on a connection of its own (autocommit)."""
        import psycopg2

        connection = psycopg2.connect(host=self.databases.host, port=self.databases.port,
                                      user=self.databases.user, dbname=self.databases.names["catalog"],
                                      connect_timeout=10)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else None
        finally:
            connection.close()

    def analyze(self, vacuum=False):
        began = time.perf_counter()
        self.query("VACUUM (ANALYZE)" if vacuum else "ANALYZE")
        self.runs += 1
        self.seconds += time.perf_counter() - began

    def after_batch(self, works):
        if self.emulate and works - self.analyzed_at > 50 + 0.1 * self.analyzed_at:
            self.analyze()
            self.analyzed_at = works

    def summary(self):
        return {"mode": self.mode, "server_autovacuum": self.autovacuum, "emulated_autoanalyze": self.emulate,
                "analyze_runs": self.runs, "analyze_seconds": round(self.seconds, 1)}


def sqlite_rows(data_dir):
    connection = sqlite3.connect(f"file:{data_dir / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("works", "work_grams", "people", "contributors", "items")}
    finally:
        connection.close()


# --- the phases --------------------------------------------------------------------------------------


def rate(parts):
    """Records per second over (records, seconds) pairs."""
    seconds = sum(part[1] for part in parts)
    return round(sum(part[0] for part in parts) / seconds, 1) if seconds else None


def by_tenth(parts):
    size = max(1, len(parts) // 10)
    return [rate(parts[start:start + size]) for start in range(0, len(parts), size)]


class Import:
    """Imports ``works`` records in batches, with one copy for a share of them; keeps its figures as it goes,
    so that an interrupted run still reports what was done."""

    def __init__(self, rpc, catalogue, works, copy_share, catalog_pids, analyzer=None, in_flight=IN_FLIGHT):
        self.rpc, self.catalogue, self.total = rpc, catalogue, works
        self.in_flight, self.sending, self.last_answer = in_flight, deque(), None
        self.analyzer = analyzer
        self.copy_share, self.catalog_pids = copy_share, catalog_pids
        self.batch_times = []  # (records, seconds in import_works)
        self.item_times = []  # (copies, seconds in add_items)
        self.wall_marks = []  # (works done, seconds since the start)
        self.pending_items, self.isbn_samples, self.errors = [], [], []
        self.items_added = self.rejected = 0
        self.generate_seconds = 0.0
        self.started = None
        self.cpu_before = self.machine_before = None
        self.libraries = [library["code"] for library in LIBRARIES]

    def run(self, stopping):
        self.started = time.monotonic()
        self.cpu_before = self._catalog_cpu()
        self.machine_before = machine_cpu()
        report_every = max(self.total // 20, BATCH_SIZE)
        reported = 0
        generator = self.catalogue.records(self.total, self.copy_share)
        while True:
            if stopping.is_set():
                raise Stop("stopping")
            began = time.perf_counter()
            batch = []
            for entry in generator:
                batch.append(entry)
                if entry[1]["isbn"] and entry[0] % 997 == 0 and len(self.isbn_samples) < 200:
                    self.isbn_samples.append(entry[1]["isbn"])
                if len(batch) == BATCH_SIZE:
                    break
            self.generate_seconds += time.perf_counter() - began
            if not batch:
                break
            self._send(batch)
            while len(self.sending) >= self.in_flight:  # the next batch is made while these are saved
                self._settle()
            done = self.done()
            if self.analyzer is not None:
                self.analyzer.after_batch(done)
            self.wall_marks.append((done, time.monotonic() - self.started))
            if done >= reported + report_every or done == self.total:
                reported = done
                self._progress(done)
        while self.sending:
            self._settle()
        self._flush_items(force=True)
        return self.summary()

    def _catalog_cpu(self):
        seconds = [cpu_seconds(pid) for pid in self.catalog_pids]
        return None if not seconds or None in seconds else sum(seconds)

    def done(self):
        return sum(count for count, _seconds in self.batch_times)

    def _send(self, batch):
        """Send a batch without waiting for it: up to ``in_flight`` are saved at once, as the import command
        does."""
        records = [record for _i, record, _copy in batch]
        self.sending.append((batch, self.rpc.catalog.import_works.call_async(records), time.perf_counter()))

    def _settle(self):
        """The oldest batch's answer. Its time is from when it was sent, or when the batch before it was
        answered if that was later: the seconds the import spent on it alone, so that rates add up."""
        batch, reply, sent = self.sending.popleft()
        answer = reply.result()
        finished = time.perf_counter()
        self.batch_times.append((len(batch), finished - max(sent, self.last_answer or sent)))
        self.last_answer = finished
        self.rejected += answer["rejected"]
        if answer["rejected"] and len(self.errors) < 5:
            self.errors.append({"works": answer["errors"][:3]})
        for (i, _record, copy), work_id in zip(batch, answer["work_ids"]):
            if copy:
                self.pending_items.append({"barcode": f"BK{i:09d}", "work_id": work_id,
                                           "library": self.libraries[i % len(self.libraries)]})
        self._flush_items()

    def _flush_items(self, force=False):
        while self.pending_items and (force or len(self.pending_items) >= BATCH_SIZE):
            chunk, self.pending_items = self.pending_items[:BATCH_SIZE], self.pending_items[BATCH_SIZE:]
            began = time.perf_counter()
            answer = self.rpc.catalog.add_items(chunk)
            self.item_times.append((len(chunk), time.perf_counter() - began))
            self.items_added += answer["added"]
            if answer["rejected"] and len(self.errors) < 5:
                self.errors.append({"items": answer["errors"][:3]})

    def _progress(self, done):
        elapsed = time.monotonic() - self.started
        memory = catalog_status(self.catalog_pids)
        say(f"  {done:>9,} works  {elapsed:7.0f} s  wall {done / elapsed:5.0f} works/s  import_works "
            f"{rate(self.batch_times[-20:]):5.0f}/s (last 20 batches)  copies {self.items_added:,} "
            f"({rate(self.item_times[-10:]) or 0:4.0f}/s)  catalog RSS {memory.get('VmRSS', '?')} MiB  "
            f"ETA {(self.total - done) / max(done / elapsed, 1e-9):6.0f} s")

    def summary(self):
        wall = time.monotonic() - self.started
        works = self.done()
        last = self.batch_times[-max(1, len(self.batch_times) // 10):]
        result = {
            "works": works, "complete": works == self.total, "rejected": self.rejected, "items": self.items_added,
            "batches": len(self.batch_times), "wall_seconds": round(wall, 1),
            "import_works_seconds": round(sum(seconds for _count, seconds in self.batch_times), 1),
            "add_items_seconds": round(sum(seconds for _count, seconds in self.item_times), 1),
            "generate_seconds": round(self.generate_seconds, 1),
            "works_per_s": rate(self.batch_times),
            "works_per_s_wall": round(works / wall, 1) if wall else None,
            "works_per_s_last_10pct": rate(last),
            "works_per_s_by_tenth": by_tenth(self.batch_times),
            "items_per_s": rate(self.item_times),
            "items_per_s_by_tenth": by_tenth(self.item_times),
            "wall_seconds_at_tenths": [round(seconds, 1) for done, seconds in self.wall_marks
                                       if done % max(self.total // 10, BATCH_SIZE) < BATCH_SIZE],
            "batch_ms": latency_summary([seconds for _count, seconds in self.batch_times]),
            "item_batch_ms": latency_summary([seconds for _count, seconds in self.item_times]),
            "first_errors": self.errors[:5],
        }
        if self.analyzer is not None and self.analyzer.databases is not None:
            result["statistics"] = self.analyzer.summary()
        cpu_after = self._catalog_cpu()
        if self.cpu_before is not None and cpu_after is not None:
            result["catalog_cpu_percent"] = round(100 * (cpu_after - self.cpu_before) / wall, 1)
        machine_after = machine_cpu()
        if self.machine_before and machine_after and machine_after[1] > self.machine_before[1]:
            result["machine_cpu_percent"] = round(
                100 * (os.cpu_count() or 1) * (machine_after[0] - self.machine_before[0])
                / (machine_after[1] - self.machine_before[1]), 1)
        return result


def run_queries(base_url, mix, per_class, class_seconds, stopping, rpc_timeout, results, samples):
    """Warm-up (each distinct query once, its total noted, into ``samples``), then per class ``per_class``
    sequential requests cycling through the class's queries, for at most ``class_seconds`` (into ``results``).
    The HTTP client waits longer than the gateway, so a slow search is never abandoned while it still runs."""
    session = http_session()
    url = base_url + "/api/v1/search"

    def ask(params):
        began = time.perf_counter()
        try:
            response = session.get(url, params=dict(params, per_page=20), timeout=rpc_timeout + 30)
        except requests.RequestException as error:
            return time.perf_counter() - began, None, repr(error)[:200]
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            return elapsed, None, f"{response.status_code}: {response.text[:200]}"
        return elapsed, response.json(), None

    say("warm-up: each query once ...")
    for name, queries in mix.items():
        samples[name] = []
        for label, params in queries:
            if stopping.is_set():
                raise Stop("stopping")
            elapsed, body, error = ask(params)
            entry = {"query": label, "ms": round(elapsed * 1000, 1)}
            if body is not None:
                entry["total"] = body["total"]
                entry["returned"] = len(body["items"])
                entry["first"] = body["items"][0]["title"] if body["items"] else None
                if "more" in body:
                    entry["more"] = body["more"]
            else:
                entry["error"] = error
            samples[name].append(entry)
    everything = []
    for name, queries in mix.items():
        latencies, failures, slow = [], [], 0
        began = time.monotonic()
        for turn in range(per_class):
            if stopping.is_set():
                raise Stop("stopping")
            if time.monotonic() - began > class_seconds:
                break
            _label, params = queries[turn % len(queries)]
            elapsed, body, error = ask(params)
            if error:
                failures.append(error)
            else:
                latencies.append(elapsed)
                slow += elapsed > DEFAULT_RPC_TIMEOUT
        everything += latencies
        summary = latency_summary(latencies)
        summary.update(errors=len(failures), first_errors=failures[:3], distinct_queries=len(queries),
                       over_default_rpc_timeout=slow, seconds=round(time.monotonic() - began, 1))
        totals = [entry.get("total") for entry in samples[name] if "total" in entry]
        summary["hits_min"] = min(totals) if totals else None
        summary["hits_max"] = max(totals) if totals else None
        results[name] = summary
        say(f"  {name:<14} {summary['count']:>4} req  p50 {summary['p50_ms']} ms  p95 {summary['p95_ms']}  "
            f"p99 {summary['p99_ms']}  max {summary['max_ms']}  errors {len(failures)}  "
            f"hits {summary['hits_min']}..{summary['hits_max']}")
    results["overall"] = latency_summary(everything)
    session.close()


PAGE_PARAMS = {"q", "title", "author", "publisher", "isbn", "ndc"}  # what the OPAC's search page takes as the API does


def compare_pages(opac_url, mix, per_class, stopping, rpc_timeout):
    """The OPAC's search page (HTML) against its JSON route asking the facets the page shows, the same query one
    after the other, ``per_class`` times per class of query: the milliseconds each takes as a client on this
    machine sees them, and the bytes the page sends (HTML and its stylesheet; it has no script)."""
    session = http_session()

    def timed(path, params):
        began = time.perf_counter()
        response = session.get(opac_url + path, params=params, timeout=rpc_timeout + 30)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            raise Stop(f"{path} answered {response.status_code}: {response.text[:200]}")
        return elapsed, response

    results, html_sizes = {}, []
    json_all, page_all = [], []
    for name, queries in mix.items():
        queries = [(label, params) for label, params in queries if set(params) <= PAGE_PARAMS]
        if not queries:
            continue
        json_times, page_times = [], []
        for turn in range(per_class):
            if stopping.is_set():
                raise Stop("stopping")
            _label, params = queries[turn % len(queries)]
            json_times.append(timed("/api/v1/search", dict(params, per_page=20, facets="true"))[0])
            elapsed, page = timed("/search", params)
            page_times.append(elapsed)
            html_sizes.append(len(page.content))
        json_all += json_times
        page_all += page_times
        results[name] = {"json": latency_summary(json_times), "page": latency_summary(page_times)}
        say(f"  {name:<14} JSON p50 {results[name]['json']['p50_ms']} p95 {results[name]['json']['p95_ms']}  "
            f"page p50 {results[name]['page']['p50_ms']} p95 {results[name]['page']['p95_ms']} ms")
    stylesheet = session.get(opac_url + "/static/opac.css", timeout=30).content
    session.close()
    results["overall"] = {"json": latency_summary(json_all), "page": latency_summary(page_all)}
    results["bytes"] = {"html_max": max(html_sizes), "html_median": sorted(html_sizes)[len(html_sizes) // 2],
                        "css": len(stylesheet), "js": 0, "page_max_total": max(html_sizes) + len(stylesheet),
                        "budget": PAGE_BYTES_BUDGET}
    return results


# --- reporting --------------------------------------------------------------------------------------


def print_table(report):
    imp, size = report.get("import") or {}, report.get("index") or {}
    say("")
    say(f"== catalogue benchmark, {report['database']}, {report['works']:,} works, {report['cpus']} CPUs, "
        f"{report['catalog_processes']} catalogue process(es), "
        f"code {report['code']['commit']}{' (+ local changes)' if report['code']['services_changed_since'] else ''} ==")
    if imp:
        say(f"import: {imp['works']:,} works in {imp['import_works_seconds']} s of import_works "
            f"= {imp['works_per_s']} works/s (last 10%: {imp['works_per_s_last_10pct']}/s; wall incl. copies "
            f"{imp['works_per_s_wall']}/s); batch of {BATCH_SIZE} p50 {imp['batch_ms']['p50_ms']} ms, "
            f"max {imp['batch_ms']['max_ms']} ms")
        say(f"        import_works works/s by tenth of the import: {imp['works_per_s_by_tenth']}")
        say(f"        add_items copies/s by tenth: {imp['items_per_s_by_tenth']}")
        say(f"        {imp['items']:,} copies in {imp['add_items_seconds']} s = {imp['items_per_s']} copies/s; "
            f"total wall {imp['wall_seconds']} s; rejected {imp['rejected']}; catalog CPU "
            f"{imp.get('catalog_cpu_percent')}%, machine {imp.get('machine_cpu_percent')}% (of one core)")
        if imp.get("statistics"):
            stats = imp["statistics"]
            say(f"        PostgreSQL statistics: server autovacuum {stats['server_autovacuum']}; ANALYZE run "
                f"{stats['analyze_runs']} times during the import ({stats['analyze_seconds']} s, not in the rates)")
    if size:
        if report["database"] == "sqlite":
            objects = ", ".join(f"{name} {value}" for name, value in list(size.get("objects", {}).items())[:8])
            say(f"index: catalog.db {size['catalog.db']} MiB + WAL {size['catalog.db-wal']} MiB  ({objects})")
        else:
            tables = ", ".join(f"{table} {size[table]['total']}" for table in
                               ("works", "work_grams", "people", "contributors", "items"))
            say(f"index (MiB, with indexes): {tables}; database {size['database']} MiB")
    rows = report.get("rows")
    if rows:
        say("rows: " + ", ".join(f"{table} {count:,}" for table, count in rows.items()))
    memory = report.get("catalog_memory") or {}
    if memory.get("at_interruption"):
        say(f"catalog service memory when interrupted: RSS {memory['at_interruption'].get('VmRSS')} MiB, "
            f"peak {memory['at_interruption'].get('VmHWM')} MiB")
    elif memory:
        say(f"catalog service memory: after import RSS {memory.get('after_import', {}).get('VmRSS')} MiB; at the end "
            f"RSS {memory.get('end', {}).get('VmRSS')} MiB, peak (VmHWM) {memory.get('end', {}).get('VmHWM')} MiB")
    search = report.get("search")
    if search:
        say(f"{'class':<14} {'req':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'err':>4} {'hits':>15}")
        for name, summary in search.items():
            hits = "" if name == "overall" else f"{summary['hits_min']}..{summary['hits_max']}"
            say(f"{name:<14} {summary['count']:>5} {fmt(summary['p50_ms'])} {fmt(summary['p95_ms'])} "
                f"{fmt(summary['p99_ms'])} {fmt(summary['max_ms'])} {summary.get('errors', 0):>4} {hits:>15}")
        say(f"(ms through the gateway, sequential, per_page=20; the gateway's RPC timeout was "
            f"{report['rpc_timeout']} s)")
    pages = report.get("pages")
    if pages:
        say(f"{'OPAC class':<14} {'JSON p50':>9} {'p95':>8} {'page p50':>9} {'p95':>8}")
        for name, both in pages.items():
            if name != "bytes":
                say(f"{name:<14} {fmt(both['json']['p50_ms'], 9)} {fmt(both['json']['p95_ms'])} "
                    f"{fmt(both['page']['p50_ms'], 9)} {fmt(both['page']['p95_ms'])}")
        sizes = pages["bytes"]
        say(f"search page bytes: HTML up to {sizes['html_max']:,} (median {sizes['html_median']:,}) + CSS "
            f"{sizes['css']:,} + JS {sizes['js']} = {sizes['page_max_total']:,} of a {sizes['budget']:,} budget "
            f"(before compression)")


def code_version():
    """The commit measured, and whether the working tree differed from it (others may be editing)."""
    import subprocess

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    changed = git("status", "--porcelain", "--", "services", "shiori")
    return {"commit": git("rev-parse", "--short", "HEAD"), "services_changed_since": bool(changed)}


def fmt(value, width=8):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


# --- main -------------------------------------------------------------------------------------------


def add_catalog_processes(parser):
    parser.add_argument("--catalog-processes", type=int,
                        help="catalogue processes (SHIORI_REPLICAS; default 2 on PostgreSQL, 1 on SQLite, which has "
                             "one writer)")


def check_catalog_processes(parser, args):
    if args.catalog_processes is None:
        args.catalog_processes = 2 if args.database == "postgresql" else 1
    if args.catalog_processes < 1 or (args.catalog_processes > 1 and args.database == "sqlite"):
        parser.error("--catalog-processes: 1 on SQLite, at least 1 on PostgreSQL")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--works", type=int, default=1_000_000, help="works to import (default 1000000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--queries", type=int, default=200, help="sequential searches per query class (default 200)")
    parser.add_argument("--class-seconds", type=float, default=300,
                        help="stop a query class after this long even if --queries are not done (default 300)")
    parser.add_argument("--page-queries", type=int, default=50,
                        help="per query class, searches through the OPAC's HTML page and its JSON route each "
                             "(default 50; 0: none)")
    parser.add_argument("--copy-share", type=float, default=0.2, help="share of works with one copy (default 0.2)")
    parser.add_argument("--seed", type=int, default=20240501)
    add_catalog_processes(parser)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT,
                        help=f"import batches sent at once per catalogue process (default {IN_FLIGHT}, as "
                             "SHIORI_IMPORT_IN_FLIGHT under make run)")
    parser.add_argument("--rpc-timeout", type=float, default=600.0,
                        help="SHIORI_RPC_TIMEOUT for the system (default 600, so slow searches are measured, not "
                             "cut at the services' default of 5 s, and never overlap; those over 5 s are counted)")
    parser.add_argument("--pg-analyze", choices=("auto", "off"), default="auto",
                        help="auto (default): VACUUM (ANALYZE) after the import, and ANALYZE during it as "
                             "autovacuum would if the server has autovacuum off; off: never")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results (default benchmarks/results/catalogue-<database>-<works>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory and databases")
    parser.add_argument("--hold", type=float, default=0,
                        help="keep the system up this many seconds after the searches, for inspection (Ctrl-C ends)")
    args = parser.parse_args(argv)
    check_catalog_processes(parser, args)
    if args.in_flight < 1:
        parser.error("--in-flight: at least 1")
    if args.works < 1000:
        parser.error("--works: at least 1000")
    if not 0 <= args.copy_share <= 1:
        parser.error("--copy-share: between 0 and 1")
    check_broker_arguments(args)
    if args.pg_host not in (LOCALHOST, "localhost"):
        parser.error(f"--pg-host must be {LOCALHOST}")
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()

    broker, importing = Broker(args.broker_url, args.broker_admin_url), None
    under_test = SystemUnderTest(
        args.database, broker, keep_data=args.keep_data, postgres={"host": args.pg_host, "port": args.pg_port},
        prefix="shiori-bench-catalogue-",
        environ={"SHIORI_REPLICAS": f"catalog={args.catalog_processes}", "SHIORI_OPAC_HOST": LOCALHOST,
                 "SHIORI_OPAC_PORT": str(free_port()), "SHIORI_RPC_TIMEOUT": f"{args.rpc_timeout:g}"})
    data_dir = under_test.data_dir
    report = {
        "benchmark": "catalogue", "database": args.database, "works": args.works,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "batch_size": BATCH_SIZE, "copy_share": args.copy_share, "seed": args.seed,
        "catalog_processes": args.catalog_processes,
        "queries_per_class": args.queries, "rpc_timeout": args.rpc_timeout, "code": code_version(),
    }
    exit_code = 0
    try:
        say(f"data dir {data_dir}")
        began = time.monotonic()
        catalogue = Catalogue(args.seed)
        say(f"Aozora base: {len(catalogue.base):,} works, {len(catalogue.family_names)} family and "
            f"{len(catalogue.given_names)} given names, {len(catalogue.publishers)} publishers, "
            f"{len(catalogue.fragments):,} title fragments ({time.monotonic() - began:.1f} s)")

        say(f"broker virtual host {broker.vhost}")
        began = time.monotonic()
        base_url = under_test.start()
        system, databases = under_test.system, under_test.databases
        if databases is not None:
            say(f"databases {', '.join(databases.names.values())}")
        report["startup_seconds"] = round(time.monotonic() - began, 1)
        catalog_pids = [pid for name, pid in system.processes().items() if name.split("-")[0] == "catalog"]
        say(f"system up at {base_url} in {report['startup_seconds']} s; catalog service pids {catalog_pids}")

        with operator_rpc(TENANT, 900, system.operator_environment()) as rpc:
            for library in LIBRARIES:
                rpc.catalog.add_library(library)
            say(f"{len(LIBRARIES)} libraries; importing {args.works:,} works in batches of {BATCH_SIZE}, "
                f"one copy for {args.copy_share:.0%} of them ...")
            analyzer = Analyzer(databases, args.pg_analyze)
            if analyzer.emulate:
                say("WARNING: this PostgreSQL runs with autovacuum off, so no table would ever get statistics: "
                    "the benchmark runs ANALYZE whenever the works grew by 10%, and VACUUM at the end, as "
                    "autovacuum would (--pg-analyze off to see the system without)")
            importing = Import(rpc, catalogue, args.works, args.copy_share, catalog_pids, analyzer,
                               in_flight=args.in_flight * args.catalog_processes)
            report["import"] = importing.run(stopping)
            isbn_samples = importing.isbn_samples
        imp = report["import"]
        say(f"imported {imp['works']:,} works in {imp['import_works_seconds']} s ({imp['works_per_s']} works/s, "
            f"last 10% {imp['works_per_s_last_10pct']}/s), {imp['items']:,} copies in {imp['add_items_seconds']} s")
        report["catalog_memory"] = {"after_import": catalog_status(catalog_pids)}
        if args.database == "postgresql" and args.pg_analyze != "off":
            began = time.perf_counter()
            analyzer.analyze(vacuum=True)  # what autovacuum does within minutes of a bulk load
            report["final_vacuum_analyze_seconds"] = round(time.perf_counter() - began, 1)
            say(f"VACUUM (ANALYZE) after the import: {report['final_vacuum_analyze_seconds']} s "
                f"({analyzer.runs - 1} during the import, {analyzer.seconds:.1f} s in all)")
        if args.database == "sqlite":
            report["index"] = sqlite_sizes(data_dir)
            report["rows"] = sqlite_rows(data_dir)
        else:
            report["index"] = postgres_sizes(databases)
            report["rows"] = report["index"].pop("rows")
        say(f"index: {json.dumps(report['index'], ensure_ascii=False)}")

        mix = query_mix(catalogue, isbn_samples, args.seed)
        report["query_mix"] = {name: [label for label, _params in queries] for name, queries in mix.items()}
        report["search"], report["search_samples"] = {}, {}
        run_queries(base_url, mix, args.queries, args.class_seconds, stopping, args.rpc_timeout,
                    report["search"], report["search_samples"])
        say("totals of a few queries (warm-up pass):")
        for name, entries in report["search_samples"].items():
            shown = "; ".join(f"{entry['query']} -> {entry.get('total', entry.get('error'))}"
                              + (" (more)" if entry.get("more") else "")
                              + (f" (「{entry['first'][:24]}」…)" if entry.get("first") else "")
                              for entry in entries[:3])
            say(f"  {name:<14} {shown}")
        if args.page_queries:
            say(f"the OPAC's search page against its JSON route, {args.page_queries} of each per class ...")
            report["pages"] = compare_pages(under_test.opac_url, mix, args.page_queries, stopping, args.rpc_timeout)
        report["catalog_memory"]["end"] = catalog_status(catalog_pids)
        report["service_memory_end"] = {name: proc_status(pid) for name, pid in system.processes().items()}
        if args.hold > 0:
            say(f"holding the system for {args.hold:g} s (Ctrl-C ends) ...")
            deadline = time.monotonic() + args.hold
            while time.monotonic() < deadline and not stopping.is_set():
                time.sleep(1)
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        if importing is not None and "import" not in report and importing.started is not None:
            report["import"] = importing.summary()  # interrupted: what was done so far
            report["catalog_memory"] = {"at_interruption": catalog_status(catalog_pids)}
        say("stopping the system ...")
        counts, samples = under_test.close()
        report["log_problems"] = {"counts": counts, "first": samples}
        if any(counts.values()):
            say(f"warnings/errors in the service logs: {counts}")
            for line in samples:
                say(f"  {line}")

    if report.get("import"):
        print_table(report)
        output = Path(args.output) if args.output else RESULTS_DIR / f"catalogue-{args.database}-{args.works}.json"
        write_report(report, output, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
