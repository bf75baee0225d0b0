"""The retention pass as the operators' command puts it together (shiori.commands.retention_pass): the
patrons service says who is unused, the loans service who has something out and erases the others."""
from unittest.mock import MagicMock, call

from services.patrons.errors import PatronHasLoans
from shiori.commands.calls import retention_pass


def services(unused, with_loans, lent_since=()):
    rpc = MagicMock()
    rpc.patrons.unused_patrons.return_value = {"retention_years": 5, "patron_ids": unused}
    rpc.loans.patrons_with_loans.return_value = with_loans

    def erase(patron_id):
        if patron_id in lent_since:
            raise PatronHasLoans(details={"loans": 1})

    rpc.loans.erase_patron.side_effect = erase
    return rpc


def test_the_unused_are_erased_but_for_those_with_anything_on_loan():
    rpc = services(unused=[1, 2, 3], with_loans=[2])
    assert retention_pass(rpc, dry_run=False) == {"retention_years": 5, "due": 3, "kept_with_loans": 1, "deleted": 2}
    assert rpc.loans.erase_patron.call_args_list == [call(1), call(3)]


def test_one_who_borrowed_since_they_were_counted_is_kept():
    rpc = services(unused=[1, 2], with_loans=[], lent_since={2})
    assert retention_pass(rpc, dry_run=False) == {"retention_years": 5, "due": 2, "kept_with_loans": 1, "deleted": 1}


def test_a_dry_run_only_counts():
    rpc = services(unused=[1, 2], with_loans=[1])
    assert retention_pass(rpc, dry_run=True) == {"retention_years": 5, "due": 2, "kept_with_loans": 1, "deleted": 0}
    assert not rpc.loans.erase_patron.called


def test_no_retention_period_asks_the_loans_service_nothing():
    rpc = services(unused=[], with_loans=[])
    rpc.patrons.unused_patrons.return_value = {"retention_years": 0, "patron_ids": []}
    assert retention_pass(rpc, dry_run=False) == {"retention_years": 0, "due": 0, "kept_with_loans": 0, "deleted": 0}
    assert not rpc.loans.patrons_with_loans.called
