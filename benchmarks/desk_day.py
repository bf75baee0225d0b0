"""A desk day's load, without any I/O: the mix of operations, what one desk holds and may do next, its client's
retries, and how the load's event log becomes figures (per operation, per window) and a soak's drift.

Shared by ``load.py`` (the harness side, under eventlet) and ``locustfile.py`` (the load, under gevent): it
imports neither."""
from dataclasses import dataclass, field

from figures import latency_summary

# A desk day per 100 operations. Our assumption, not a measured log: Japanese public libraries publish loans,
# holds and OPAC use but not a desk's request mix; what it keeps is the order between them. Searches well
# outnumber loans (residents search the OPAC from home and on the library's terminals, staff search at the
# desk); every check-out is matched by a check-in (a steady state has as many copies coming back as going
# out); a patron look-up (a scanned card) opens a visit, which borrows several copies; renewals and holds are
# a small part of the day, and each desk cancels the holds it places (filling a hold needs a returned copy
# of that very work, which a steady load cannot arrange for every hold).
MIX = {
    "search_page": 27,   # the OPAC's results page (HTML), anonymous: residents
    "search_api": 20,    # GET /api/v1/search on the staff gateway: a desk looking a title up
    "patron_lookup": 10,  # GET /api/v1/patrons?card_number=: a card scanned at the desk
    "checkout": 15,
    "checkin": 15,
    "renewal": 5,
    "hold_place": 4,
    "hold_cancel": 4,
}
# Not in the mix: a desk sets its own state right after an answer it could not read.
REPAIRS = ("repair_copy", "repair_holds")
MAX_OPEN_HOLDS = 3  # per desk: one more is placed only after one is cancelled
RENEWAL_LIMIT = 20  # the benchmark's loan rule (the API's largest)

# A client that got no answer, or a 503 (a service did not answer in time; nothing was committed past the
# deadline), sends the same request again with the same Idempotency-Key.
RETRIED = frozenset({503, "timeout", "connection"})
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5  # before the second attempt; doubled before each next one

# A soak has drifted when an operation's latency in its last window is this many times that of its first, or
# a process's resident memory grew by this share after the first window (the warm-up: caches, connections).
LATENCY_DRIFT = 1.5
RSS_DRIFT = 0.20
MIN_WINDOW_COUNT = 20  # fewer answers of an operation in a window make its percentiles noise


# Answers other than a 2xx that still mean the operation is done: a retry of a request that its first attempt
# carried out (whose answer is not kept: a check-in's, as the loan it ended is gone), and, for a desk repairing
# its state after a lost answer, a copy that turns out to be on the shelf already.
DONE_ANYWAY = {"409:REQUEST_ALREADY_DONE"}
DONE_WHEN_REPAIRING = {"repair_copy": {"409:ITEM_NOT_ON_LOAN"}}


def mix_shares(mix=MIX):
    total = sum(mix.values())
    return {operation: weight / total for operation, weight in mix.items()}


def transport_status(error):
    """The status recorded for a request that got no HTTP answer."""
    return "timeout" if "timeout" in type(error).__name__.lower() else "connection"


def status_label(status, error_code=None):
    """What the log keeps of an answer: its status, with the API's error code when it has one
    (``409:REQUEST_ALREADY_DONE``)."""
    return f"{status}:{error_code}" if error_code else status


def retried(status):
    return status in RETRIED


def backoff(attempt):
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return BACKOFF_SECONDS * 2 ** (attempt - 1)


def succeeded(status):
    return isinstance(status, int) and 200 <= status < 300


def done(event):
    """Whether the operation was carried out (a 2xx, or an answer that says it was)."""
    return succeeded(event.status) or event.status in DONE_ANYWAY \
        or event.status in DONE_WHEN_REPAIRING.get(event.operation, ())


@dataclass
class Copy:
    barcode: str
    loan_id: int | None = None  # on loan to the desk's patron
    renewals: int = 0
    uncertain: bool = False  # an answer was lost: the desk checks the copy in to know where it is


@dataclass
class Desk:
    """One client of the load: a desk with its own patron and copies, so no two desks race for a copy, and
    holds on works of a shared pool (copies out on loan for good, so holds queue as they do for a bestseller)."""

    card_number: str
    patron_id: int
    copies: list
    hold_works: list
    holds: dict = field(default_factory=dict)  # hold id: work id
    holds_uncertain: bool = False

    def next_operation(self, rng):
        """The next operation: a repair if an answer was lost, else one drawn from the mix; one the desk cannot
        do now becomes its counterpart (nothing to check in: a check-out; no hold to cancel: a hold), which
        keeps check-outs and check-ins, places and cancels, even over a run."""
        if any(copy.uncertain for copy in self.copies):
            return "repair_copy"
        if self.holds_uncertain:
            return "repair_holds"
        drawn = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        return self.feasible(drawn)

    def feasible(self, operation):
        lent = self.lent()
        if operation == "checkout" and len(lent) == len(self.copies):
            return "checkin"
        if operation == "checkin" and not lent:
            return "checkout"
        if operation == "renewal":
            if not lent:
                return "checkout"
            if self.copy_to_renew().renewals >= RENEWAL_LIMIT:
                return "checkin"
        if operation == "hold_place" and (len(self.holds) >= MAX_OPEN_HOLDS or not self.works_to_hold()):
            return "hold_cancel"
        if operation == "hold_cancel" and not self.holds:
            return "hold_place"
        return operation

    def lent(self):
        return [copy for copy in self.copies if copy.loan_id is not None]

    def copy_to_lend(self, rng):
        return rng.choice([copy for copy in self.copies if copy.loan_id is None])

    def copy_to_return(self, rng):
        return rng.choice(self.lent())

    def copy_to_renew(self):
        return min(self.lent(), key=lambda copy: copy.renewals)

    def works_to_hold(self):
        held = set(self.holds.values())
        return [work_id for work_id in self.hold_works if work_id not in held]

    def hold_to_cancel(self, rng):
        return rng.choice(sorted(self.holds))


# --- the event log: one line per logical operation (all its attempts), written by the load ----------------

WINDOW_START, WINDOW_END = "#start", "#end"


def event_line(operation, started, seconds, status, attempts):
    return f"{operation}\t{started:.6f}\t{seconds:.6f}\t{status}\t{attempts}\n"


def marker_line(marker, at):
    return f"{marker}\t{at:.6f}\n"


@dataclass(frozen=True)
class Event:
    operation: str
    started: float  # wall clock (time.time()), shared by both processes
    seconds: float
    status: object  # an HTTP status (int), one with its error code ("409:ITEM_NOT_ON_LOAN"), "timeout", "connection"
    attempts: int

    @property
    def ended(self):
        return self.started + self.seconds


def read_event_log(lines):
    """(window start, window end, events) from the log's lines; a marker not written yet is None."""
    start = end = None
    events = []
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if parts[0] == WINDOW_START:
            start = float(parts[1])
        elif parts[0] == WINDOW_END:
            end = float(parts[1])
        elif len(parts) == 5:
            status = int(parts[3]) if parts[3].isdigit() else parts[3]
            events.append(Event(parts[0], float(parts[1]), float(parts[2]), status, int(parts[4])))
    return start, end, events


def within(events, start, end):
    """The operations that began and ended inside [start, end]."""
    return [event for event in events if event.started >= start and event.ended <= end]


def operation_figures(events, seconds):
    """Per operation: answers counted, rate, share, latency of those carried out (``done``), errors by status
    and how many needed more than one attempt; with the totals."""
    by_operation = {}
    for event in events:
        by_operation.setdefault(event.operation, []).append(event)
    total = len(events)
    figures = {}
    for operation in [*MIX, *REPAIRS, *sorted(set(by_operation) - set(MIX) - set(REPAIRS))]:
        answered = by_operation.get(operation, [])
        if not answered and operation not in MIX:
            continue
        latency = latency_summary([event.seconds for event in answered if done(event)])
        figures[operation] = {
            "count": len(answered), "ops_per_s": round(len(answered) / seconds, 2) if seconds else None,
            "share": round(len(answered) / total, 4) if total else None, "done": latency.pop("count"), **latency,
            "errors": errors_by_status(answered),
            "retried": sum(1 for event in answered if event.attempts > 1),
        }
    return {
        "seconds": round(seconds, 3), "operations": total,
        "ops_per_s": round(total / seconds, 1) if seconds else None,
        "errors": errors_by_status(events), "retried": sum(1 for event in events if event.attempts > 1),
        "per_operation": figures,
    }


def errors_by_status(events):
    counts = {}
    for event in events:
        if not done(event):
            counts[str(event.status)] = counts.get(str(event.status), 0) + 1
    return dict(sorted(counts.items()))


def windows(events, start, every, count):
    """A soak's windows of ``every`` seconds from ``start``: per operation the answers and p50/p95 of those
    that began in it."""
    found = []
    for index in range(count):
        low, high = start + index * every, start + (index + 1) * every
        found.append({"from_s": round(index * every, 1), "to_s": round((index + 1) * every, 1),
                      **operation_figures(within(events, low, high), every)})
    return found


def drift(first, last, rss_first, rss_last):
    """The soak's verdict: each operation's p50 and p95 in the ``last`` window against the ``first`` (ratios;
    None where a window has too few answers), each process's resident memory (MiB) at the end against after the
    first window, and what drifted beyond LATENCY_DRIFT or RSS_DRIFT ("no drift" when nothing did)."""
    latency, drifted = {}, []
    for operation in MIX:
        before, after = first["per_operation"].get(operation), last["per_operation"].get(operation)
        ratios = {}
        for measure in ("p50_ms", "p95_ms"):
            enough = before and after and min(before["count"], after["count"]) >= MIN_WINDOW_COUNT \
                and before[measure] and after[measure] is not None
            ratios[measure] = round(after[measure] / before[measure], 2) if enough else None
            if ratios[measure] is not None and ratios[measure] > LATENCY_DRIFT:
                drifted.append(f"{operation} {measure[:3]} x{ratios[measure]}")
        latency[operation] = ratios
    memory = {}
    for name, before in rss_first.items():
        after = rss_last.get(name)
        if before is None or after is None or before <= 0:
            continue
        growth = (after - before) / before
        memory[name] = {"first_mib": round(before, 1), "last_mib": round(after, 1),
                        "growth_mib": round(after - before, 1), "growth_percent": round(100 * growth, 1)}
        if growth > RSS_DRIFT:
            drifted.append(f"{name} RSS +{100 * growth:.0f}%")
    return {"latency_ratio_last_to_first": latency, "rss": memory,
            "thresholds": {"latency_ratio": LATENCY_DRIFT, "rss_growth_percent": 100 * RSS_DRIFT,
                           "min_answers_per_window": MIN_WINDOW_COUNT},
            "drifted": drifted, "verdict": "no drift" if not drifted else "drift: " + ", ".join(drifted)}
