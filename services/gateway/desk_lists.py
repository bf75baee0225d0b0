"""The lists a desk works from (``/desk/lists``), each a page that prints on its own: the hold shelf (copies kept
for patrons, until when; those not picked up in time marked), the copies to send to other libraries, the pull
list (copies on this library's shelves that holds want), the copies in transit to this library, and the phone
list of notices for patrons without e-mail, each marked done once phoned.

The hold shelf names no patron: the slip in each copy does, and a patron at the desk is found by their card. The
phone list does name them, as it must: notices reads their name and phone number, and records the read."""
from services.gateway.desk import _form_id, desk_library, desk_page
from services.gateway.errors import status_of
from services.gateway.pages import Page, Redirect
from shiori.clock import library_day, token_time
from shiori.errors import DomainError

LISTS = "/desk/lists"
PHONE_LIST = "/desk/lists/phone"


class DeskLists:
    """Needs the gateway's ``loans``, ``catalog`` and ``notices`` proxies, and the desk's ``_desk_values``."""

    @desk_page(LISTS)
    def desk_lists(self, request):
        """How long each list is; the phone list is not counted here, as reading it reads the patrons' names."""
        lists = self.loans.hold_shelf(desk_library(request))
        return self._list_page(request, "index", counts={name: len(entries) for name, entries in lists.items()})

    @desk_page(f"{LISTS}/hold-shelf")
    def desk_hold_shelf(self, request):
        kept = self.loans.hold_shelf(desk_library(request))["on_shelf"]
        titles = self.catalog.describe_works(sorted({slip["work_id"] for slip in kept})) if kept else {}
        entries = [dict(slip, title=titles.get(str(slip["work_id"]), {}).get("title")) for slip in kept]
        return self._list_page(request, "hold_shelf", entries=entries)

    @desk_page(f"{LISTS}/to-send")
    def desk_to_send(self, request):
        return self._list_page(request, "to_send", entries=self.loans.hold_shelf(desk_library(request))["to_send"])

    @desk_page(f"{LISTS}/pull")
    def desk_pull_list(self, request):
        return self._list_page(request, "pull", entries=self.loans.hold_shelf(desk_library(request))["to_pull"])

    @desk_page(f"{LISTS}/in-transit")
    def desk_in_transit(self, request):
        return self._list_page(request, "in_transit",
                               entries=self.loans.hold_shelf(desk_library(request))["in_transit"])

    @desk_page(PHONE_LIST)
    def desk_phone_list(self, request):
        return self._phone_list_page(request, phoned=request.args.get("phoned") == "1")

    @desk_page(PHONE_LIST, "POST")
    def desk_phoned(self, request):
        """The patron has been phoned: the notice leaves the list (post, redirect, get)."""
        try:
            self.notices.done(_form_id(request, "notice_id"))
        except DomainError as refusal:  # another desk marked it first, say
            return self._phone_list_page(request, refusal=refusal)
        return Redirect(PHONE_LIST, {"phoned": "1"})

    def _phone_list_page(self, request, phoned=False, refusal=None):
        return self._list_page(request, "phone", refusal, entries=self.notices.phone_list(), phoned=phoned)

    def _list_page(self, request, name, refusal=None, **values):
        return Page(f"desk/lists/{name}.html", {
            "desk": self._desk_values(request), "today": library_day(token_time()).isoformat(),
            "refusal": refusal.code if refusal else None, **values}, status_of(refusal))
