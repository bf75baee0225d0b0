"""Statistics: a consumer of the loans' and patrons' events that counts them into anonymous daily
aggregates (check-outs, check-ins, renewals, holds placed, registrations) per library, patron category,
age band, item type and NDC class, for the numbers libraries report to the national surveys (社会教育調査,
日本の図書館). It only subscribes: it calls no service, and no service knows it is there."""
import base64
import io

from nameko.dependency_providers import Config
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.statistics.models import DIMENSIONS, Base, ProcessedEvent
from services.statistics.repository import DailyCounts
from services.statistics.rules import is_exact, protect
from services.statistics.schemas import (
    CardRegisteredSchema, HoldPlacedSchema, LoanCreatedSchema, LoanDueDateChangedSchema, LoanReturnedSchema,
    StatisticsQuerySchema,
)
from shiori.clock import library_day
from shiori.db import Database
from shiori.errors import load
from shiori.events import EventDelivery, first_delivery, read_event, subscribe
from shiori.roles import OPERATOR, STAFF_ROLES, WHOLE_TENANT, require_at
from shiori.rpc import Caller, rpc

EVENT_VERSION = 1
MEASURES = ("checkouts", "checkins", "renewals", "holds_placed", "registrations")


class StatisticsService:
    name = "statistics"

    db = Database(Base.metadata)
    delivery = EventDelivery()
    caller = Caller()
    config = Config()

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"status": "ok", **self.delivery()}

    # --- counting ------------------------------------------------------------------------------------

    @subscribe("loans", "loan_created")
    def on_loan_created(self, body):
        self._count(body, LoanCreatedSchema(), "checkouts", lambda data: (data["loaned_on"], data["library"]))

    @subscribe("loans", "loan_returned")
    def on_loan_returned(self, body):
        self._count(body, LoanReturnedSchema(), "checkins", lambda data: (data["returned_on"], data["library"]))

    @subscribe("loans", "loan_due_date_changed")
    def on_due_date_changed(self, body):
        self._count(body, LoanDueDateChangedSchema(), "renewals",
                    lambda data: (data["changed_on"], data["library"]) if data["reason"] == "renewal" else None)

    @subscribe("loans", "hold_placed")
    def on_hold_placed(self, body):
        self._count(body, HoldPlacedSchema(), "holds_placed", lambda data: (data["placed_on"], data["pickup_library"]))

    @subscribe("patrons", "card_registered")
    def on_card_registered(self, body):
        self._count(body, CardRegisteredSchema(), "registrations",
                    lambda data: (data["registered_on"], data["home_library"]),
                    dimensions=lambda data: {"patron_category": data["category"], "age_band": data["age_band"]})

    def _count(self, body, schema, measure, day_and_library, dimensions=None):
        """One more ``measure`` on its day and dimensions. Two first counts of a day at once: the loser's
        commit fails, and it adds one to the winner's."""
        event = read_event(body, EVENT_VERSION, schema)
        if event is None:
            return
        data = event["data"]
        where = day_and_library(data)
        if where is None:
            return
        day, library = where
        key = {"tenant": event["tenant"], "day": day or library_day(event["occurred_at"]), "measure": measure,
               "library": library}
        chosen = dimensions(data) if dimensions else {name: data.get(name) for name in DIMENSIONS[1:]}
        key.update({name: chosen.get(name) or "" for name in DIMENSIONS[1:]})
        for last_try in (False, True):
            if not first_delivery(self.db, ProcessedEvent, event):
                return
            DailyCounts(self.db).add_one(key)
            try:
                self.db.commit()
                return
            except IntegrityError:
                self.db.rollback()
                if last_try:
                    raise

    # --- reading -------------------------------------------------------------------------------------

    @rpc
    def aggregates(self, query):
        """Counts per measure over a period, broken down by ``group_by`` (day and/or dimensions), summed
        over the rest: the tenant's libraries for its admins, else the caller's own. Answers finer than library
        × month are protected (``rules.protect``): small cells suppressed, the others rounded."""
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        params = load(StatisticsQuerySchema(), query)
        libraries = None if self.caller.role in WHOLE_TENANT else self.caller.libraries
        if "library" in params:
            require_at(self.caller, params["library"])
            libraries = [params["library"]]
        rows = DailyCounts(self.db).sums(self.caller.tenant, params["since"], params["until"], params["group_by"],
                                         libraries)
        names = params["group_by"] + ["measure", "count"]
        cells = [dict(zip(names, [value.isoformat() if hasattr(value, "isoformat") else value for value in row]))
                 for row in rows]
        min_cell = int(self.config["MIN_CELL"])
        exact = is_exact(params["group_by"], params["since"], params["until"])
        return {"from": params["since"].isoformat(), "to": params["until"].isoformat(), "measures": list(MEASURES),
                "group_by": params["group_by"],
                "disclosure_control": None if exact else {"min_cell": min_cell, "rounded_to": max(1, min_cell)},
                "rows": [dict(cell, suppressed=False) for cell in cells] if exact else
                protect(cells, params["group_by"], min_cell)}

    @rpc
    def checkouts_chart(self, query):
        """Daily check-outs per library over a period, as a PNG (base64: RPC carries JSON)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        counts = self.aggregates(dict(query, group_by="day,library"))
        per_library = {}
        for row in counts["rows"]:
            if row["measure"] == "checkouts" and not row["suppressed"]:  # a day with few check-outs has no point
                per_library.setdefault(row["library"], {})[row["day"]] = row["count"]
        figure, axes = pyplot.subplots(figsize=(10, 4), dpi=100)
        for library, days in sorted(per_library.items()):
            axes.plot(list(days), list(days.values()), marker="o", label=library)
        axes.set_title(f"check-outs per day, {counts['from']} to {counts['to']}")
        axes.set_ylabel("check-outs")
        if per_library:
            axes.legend(title="library")
        figure.autofmt_xdate()
        image = io.BytesIO()
        figure.savefig(image, format="png")
        pyplot.close(figure)
        return base64.b64encode(image.getvalue()).decode()
