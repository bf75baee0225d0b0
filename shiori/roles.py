"""Who may call: the roles a token or an operator command carries (nameko context data ``role``), and the rules
every service applies to them. ``docs/roles.md`` is the matrix, route by route, that these rules implement."""
from shiori.errors import Forbidden

ADMIN = "admin"  # the tenant's whole system
LIBRARIAN = "librarian"  # the libraries listed on the account, and the patrons of every non-school library
SCHOOL_LIBRARIAN = "school_librarian"  # one school library and its own patrons only
PATRON = "patron"  # themself only
OPERATOR = "operator"  # the vendor's commands (first run, imports): a tenant's whole system, no HTTP route
PUBLIC = "public"  # anonymous: the public catalogue only
SYSTEM = "system"  # a process's own housekeeping (the gateway asking for revoked credentials): no tenant's data

STAFF_ROLES = (ADMIN, LIBRARIAN, SCHOOL_LIBRARIAN)
WHOLE_TENANT = (ADMIN, OPERATOR)
ANY_STAFF = STAFF_ROLES + (OPERATOR,)  # staff, and the operators' commands and the services' own work
STAFF_OR_PATRON = ANY_STAFF + (PATRON,)  # a patron only ever for themself
# The tenant's bibliographic records are shared by all its libraries: a school librarian adds new ones, but
# only the city's librarians change existing ones or import files of them.
CATALOGUERS = (ADMIN, LIBRARIAN, OPERATOR)


def may_serve_at(role, libraries, library):
    """Whether this caller may work at ``library``: run its desk (check-outs, check-ins, the hold shelf, phone
    notices), add copies to it, read its statistics."""
    return role in WHOLE_TENANT or (role in (LIBRARIAN, SCHOOL_LIBRARIAN) and library in libraries)


def require_at(caller, library):
    """Refuse the call unless ``caller`` (a ``CallerContext``) may work at ``library``."""
    if not may_serve_at(caller.role, caller.libraries, library):
        raise Forbidden("your account does not work at this library", {"library": library})
