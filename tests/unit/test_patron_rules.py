"""The patrons service's named rules on staff accounts and log-ins, without a broker or a database."""
from datetime import timedelta

from services.patrons.errors import LastAdmin
from services.patrons.rules import ADDRESS_FACTOR, AdminRemains, WorksAtListedLibraries, login_throttle
from shiori.errors import InvalidInput

LIBRARIES = {"main": "main", "east": "branch", "kita-es": "school", "minami-es": "school"}


def test_the_last_admin_account_may_not_go():
    refusal = AdminRemains("admin", admins=1).refusal()
    assert isinstance(refusal, LastAdmin)
    assert (refusal.code, refusal.message, refusal.details) == (
        "LAST_ADMIN", "the tenant's last admin account cannot be deleted", {})


def test_an_admin_with_another_beside_them_or_a_librarian_may_go():
    assert AdminRemains("admin", admins=2).refusal() is None
    assert AdminRemains("librarian", admins=1).refusal() is None


def test_the_last_admin_account_may_not_become_a_librarian_but_may_stay_an_admin():
    refusal = AdminRemains("admin", admins=1, role_after="librarian").refusal()
    assert isinstance(refusal, LastAdmin)
    assert (refusal.code, refusal.message, refusal.details) == (
        "LAST_ADMIN", "the tenant's last admin account must stay an admin", {"role": "librarian"})
    assert AdminRemains("admin", admins=1, role_after="admin").refusal() is None  # a new password, say


def test_an_admin_with_another_beside_them_may_become_a_librarian_and_a_librarian_an_admin():
    assert AdminRemains("admin", admins=2, role_after="school_librarian").refusal() is None
    assert AdminRemains("librarian", admins=1, role_after="admin").refusal() is None


def libraries_refusal(role, libraries):
    refusal = WorksAtListedLibraries(role, libraries, LIBRARIES).refusal()
    return refusal and (type(refusal), refusal.details)


def test_staff_work_only_at_libraries_the_tenant_has():
    assert libraries_refusal("librarian", ["main", "nowhere", "gone"]) == (InvalidInput, {"libraries": [
        "no library has the code nowhere", "no library has the code gone"]})
    assert libraries_refusal("admin", ["nowhere"]) == (InvalidInput, {"libraries": ["no library has the code nowhere"]})


def test_a_librarian_works_at_one_library_at_least_and_an_admin_at_all_of_them():
    assert libraries_refusal("librarian", []) == (InvalidInput, {"libraries": [
        "a librarian works at one library at least"]})
    assert libraries_refusal("school_librarian", []) == (InvalidInput, {"libraries": [
        "a librarian works at one library at least"]})
    assert libraries_refusal("admin", []) is None
    assert libraries_refusal("librarian", ["main", "east", "kita-es"]) is None


def test_a_school_librarian_works_at_exactly_one_school_library():
    one_school = (InvalidInput, {"libraries": ["a school librarian works at exactly one school library"]})
    assert libraries_refusal("school_librarian", ["kita-es", "minami-es"]) == one_school
    assert libraries_refusal("school_librarian", ["main"]) == one_school
    assert libraries_refusal("school_librarian", ["kita-es"]) is None


def test_an_address_gets_more_tries_than_an_account_as_a_whole_library_shares_it():
    block = timedelta(minutes=15)
    account, address = login_throttle(5, block), login_throttle(5, block, shared_address=True)
    assert (account.max_failures, account.window, account.block) == (5, block, block)
    assert (address.max_failures, address.window, address.block) == (5 * ADDRESS_FACTOR, block, block)
    assert ADDRESS_FACTOR == 10
