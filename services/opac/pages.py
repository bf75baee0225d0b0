"""The public catalogue's web pages (OPAC): a search box, results with pages, and a work with every copy. They
ask the catalogue's public methods alone, as the public; a lent copy shows 「貸出中」 and its due date, never
who has it (the catalogue does not know)."""
from services.gateway.pages import Page, StaticFile, page
from shiori.errors import InvalidInput

PER_PAGE = 20
FIELDS = ("title", "author", "publisher", "isbn", "ndc")  # field search, as the catalogue's search takes it
FILTERS = ("library", "available", "ndc_class", "year_from", "year_to")  # the catalogue's too; the facets' links
DEFAULT_SORT = "relevance"


class CataloguePages:
    """Needs a ``catalog`` RPC proxy that may call the catalogue's public methods."""

    @page("/")
    def home(self, request):
        return self.front_page(request)

    def front_page(self, request):
        return Page("home.html", {"libraries": self.catalog.list_libraries(), "q": "", "fields": {},
                                  "signed_out": request.args.get("done") == "signed_out"})

    @page("/search")
    def search_page(self, request):
        query = request.args.get("q", "").strip()
        fields = {field: request.args[field].strip() for field in FIELDS if request.args.get(field, "").strip()}
        if not query and not fields:
            return self.front_page(request)
        number = _page_number(request.args.get("page", "1"))
        asked = {"q": query, **fields} if query else fields
        filters = {name: request.args[name].strip() for name in FILTERS if request.args.get(name, "").strip()}
        sort = request.args.get("sort", DEFAULT_SORT)
        kept = {**asked, **filters, **({"sort": sort} if sort != DEFAULT_SORT else {})}  # what every link keeps
        found = self.catalog.search({**kept, "page": number, "per_page": PER_PAGE, "facets": True})
        pages = max(1, -(-found["total"] // PER_PAGE))

        def narrowed(**changes):
            """This search's parameters with ``changes`` (None drops one), from its first page."""
            return {name: value for name, value in {**kept, **changes}.items() if value is not None}

        return Page("search.html", {"q": query, "fields": fields, "asked": asked, "filters": filters, "sort": sort,
                                    "kept": kept, "narrowed": narrowed, "found": found, "page": number,
                                    "pages": pages, "per_page": PER_PAGE})

    @page("/works/<int:work_id>")
    def work_page(self, request, work_id):
        return Page("work.html", self.work_values(work_id))

    def work_values(self, work_id):
        """A work's page: the record, every copy, and the libraries a hold may be picked up at."""
        return {"work": self.catalog.get_work(work_id), "copies": self.catalog.copies_of_work(work_id),
                "libraries": self.catalog.list_libraries(), "refusal": None}

    @page("/static/<name>")
    def static(self, request, name):
        return StaticFile(name)


def _page_number(text):
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise InvalidInput(details={"page": ["a page number from 1"]})
    return int(text)
