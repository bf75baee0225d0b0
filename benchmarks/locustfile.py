"""The load of ``load.py``: one locust user per desk, each doing a desk day's mix (desk_day.MIX) against the
system ``load.py`` started, as fast as answers come (no think time), and logging every operation.

    python -m locust -f benchmarks/locustfile.py --headless -u N -r N --plan PLAN.json

Runs in a process of its own, under gevent (locust's), and so never imports eventlet or the harness, which
patch the same standard library their own way. ``--plan`` is the JSON file ``load.py`` writes: the gateway's
and the OPAC's URLs, the staff token, the desks, the pool of works to hold, the search terms, the seconds to
measure and the event log to write (desk_day.event_line). The measured window starts once every user is
running and ends ``seconds`` later, when the load stops itself.

Every write carries an Idempotency-Key, a fresh one per logical operation; a request that gets no answer or
a 503 is sent again with the same key (desk_day.RETRIED), so a retried check-out lends once."""
import itertools
import json
import random
import time
import uuid
from urllib.parse import quote

import gevent
from locust import FastHttpUser, constant, events, task

from desk_day import (
    ATTEMPTS, RENEWAL_LIMIT, WINDOW_END, WINDOW_START, Copy, Desk, backoff, event_line, marker_line, retried,
    status_label, succeeded, transport_status,
)

PLAN = {}
LOG = {}
NEXT_DESK = itertools.count()


@events.init_command_line_parser.add_listener
def add_plan_argument(parser):
    parser.add_argument("--plan", help="the JSON plan load.py wrote", required=True)


@events.init.add_listener
def read_plan(environment, **_kwargs):
    with open(environment.parsed_options.plan, encoding="utf-8") as plan:
        PLAN.update(json.load(plan))
    LOG["file"] = open(PLAN["event_log"], "a", encoding="utf-8")
    LOG["environment"] = environment


@events.spawning_complete.add_listener
def start_window(user_count, **_kwargs):
    if WINDOW_START in LOG:  # fired again as users are stopped
        return
    LOG[WINDOW_START] = time.time()
    log_line(marker_line(WINDOW_START, LOG[WINDOW_START]))
    gevent.spawn_later(PLAN["seconds"], end_window)


def end_window():
    log_line(marker_line(WINDOW_END, time.time()))
    LOG["environment"].runner.quit()


@events.quitting.add_listener
def close_log(**_kwargs):
    if "file" in LOG:
        LOG["file"].close()


def log_line(line):
    LOG["file"].write(line)
    LOG["file"].flush()  # load.py reads the log while the load runs (the window's start)


class DeskUser(FastHttpUser):
    wait_time = constant(0)

    def __init__(self, environment):
        self.network_timeout = self.connection_timeout = PLAN["request_timeout"]
        super().__init__(environment)
        planned = PLAN["desks"][next(NEXT_DESK)]
        self.desk = Desk(planned["card_number"], planned["patron_id"],
                         [Copy(**copy) for copy in planned["copies"]], PLAN["hold_works"])
        self.rng = random.Random(planned["card_number"])
        self.staff = {"Authorization": f"Bearer {PLAN['token']}"}
        self.library = PLAN["library"]

    @task
    def next_operation(self):
        operation = self.desk.next_operation(self.rng)
        getattr(self, operation)()

    # --- sending, with the retries of a desk that got no answer ---------------------------------------

    def send(self, operation, method, url, body=None, staff=True, keyed=False, read_answer=False):
        """The request, sent again with the same key after a lost answer or a 503; logged once, from the first
        attempt to the answer kept, with the error's code. Answers (status, the JSON body of a write, of a
        refusal or with ``read_answer``, else None)."""
        headers = dict(self.staff) if staff else {}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        started, began = time.time(), time.perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            response = self.client.request(method, url, name=operation, json=body, headers=headers)
            status = transport_status(response.error) if response.status_code == 0 else response.status_code
            if not retried(status) or attempt == ATTEMPTS:
                break
            gevent.sleep(backoff(attempt))
        elapsed = time.perf_counter() - began
        answer = None
        if response.content and (keyed or read_answer or not succeeded(status)):
            try:
                answer = response.json()
            except ValueError:
                answer = None
        error_code = None if succeeded(status) else ((answer or {}).get("error") or {}).get("code")
        log_line(event_line(operation, started, elapsed, status_label(status, error_code), attempt))
        return status, answer

    def gateway(self, path):
        return PLAN["gateway"] + path

    # --- the mix ---------------------------------------------------------------------------------------

    def search_page(self):
        self.send("search_page", "GET", PLAN["opac"] + "/search?q=" + self.term(), staff=False)

    def search_api(self):
        self.send("search_api", "GET", self.gateway("/api/v1/search?q=" + self.term()))

    def term(self):
        return quote(self.rng.choice(PLAN["search_terms"]))

    def patron_lookup(self):
        card = self.rng.choice(PLAN["cards"])
        self.send("patron_lookup", "GET", self.gateway(f"/api/v1/patrons?card_number={card}"))

    def checkout(self):
        copy = self.desk.copy_to_lend(self.rng)
        status, answer = self.send("checkout", "POST", self.gateway("/api/v1/checkouts"), keyed=True, body={
            "card_number": self.desk.card_number, "item_barcode": copy.barcode, "library": self.library})
        if succeeded(status):
            copy.loan_id, copy.renewals = answer["loan_id"], answer["renewals"]
        else:
            copy.uncertain = True

    def checkin(self):
        self.take_back("checkin", self.desk.copy_to_return(self.rng))

    def repair_copy(self):
        self.take_back("repair_copy", next(copy for copy in self.desk.copies if copy.uncertain))

    def take_back(self, operation, copy):
        status, _answer = self.send(operation, "POST", self.gateway("/api/v1/checkins"), keyed=True,
                                    body={"item_barcode": copy.barcode, "library": self.library})
        if succeeded(status) or status == 409:  # 409: it was not on loan; either way it is on the shelf now
            copy.loan_id, copy.renewals, copy.uncertain = None, 0, False
        else:
            copy.uncertain = True

    def renewal(self):
        copy = self.desk.copy_to_renew()
        status, answer = self.send("renewal", "POST", self.gateway(f"/api/v1/loans/{copy.loan_id}/renew"),
                                   keyed=True)
        if succeeded(status):
            copy.renewals = answer["renewals"]
        elif status == 409:  # refused (the limit): it goes back at the next turn
            copy.renewals = max(copy.renewals, RENEWAL_LIMIT)

    def hold_place(self):
        work_id = self.rng.choice(self.desk.works_to_hold())
        status, answer = self.send("hold_place", "POST", self.gateway("/api/v1/holds"), keyed=True, body={
            "work_id": work_id, "pickup_library": self.library, "card_number": self.desk.card_number})
        if succeeded(status):
            self.desk.holds[answer["hold_id"]] = work_id
        else:
            self.desk.holds_uncertain = True

    def hold_cancel(self):
        hold_id = self.desk.hold_to_cancel(self.rng)
        status, _answer = self.send("hold_cancel", "DELETE", self.gateway(f"/api/v1/holds/{hold_id}"), keyed=True)
        if succeeded(status) or status == 404:
            del self.desk.holds[hold_id]
        else:
            self.desk.holds_uncertain = True

    def repair_holds(self):
        status, answer = self.send("repair_holds", "GET",
                                   self.gateway(f"/api/v1/patrons/{self.desk.patron_id}/holds?per_page=100"),
                                   read_answer=True)
        if succeeded(status):
            self.desk.holds = {hold["hold_id"]: hold["work_id"] for hold in answer["items"]}
            self.desk.holds_uncertain = False
