"""Who may call: the roles a token or an operator command carries (nameko context data ``role``)."""
ADMIN = "admin"  # the tenant's whole system
LIBRARIAN = "librarian"  # the libraries listed on the account, and the patrons of every non-school library
SCHOOL_LIBRARIAN = "school_librarian"  # one school library and its own patrons only
PATRON = "patron"  # themself only
OPERATOR = "operator"  # the vendor's commands (first run, imports): a tenant's whole system, no HTTP route
PUBLIC = "public"  # anonymous: the public catalogue only
SYSTEM = "system"  # a process's own housekeeping (the gateway asking for revoked credentials): no tenant's data

STAFF_ROLES = (ADMIN, LIBRARIAN, SCHOOL_LIBRARIAN)
WHOLE_TENANT = (ADMIN, OPERATOR)


def may_serve_at(role, libraries, library):
    """Whether a desk at ``library`` may be run by this caller (check-outs, check-ins)."""
    return role in WHOLE_TENANT or (role in (LIBRARIAN, SCHOOL_LIBRARIAN) and library in libraries)
