"""The gateway with its neighbours replaced (nameko.testing's worker_factory: every service it calls is a mock):
what it puts together from several services, and in which order it asks them."""
from unittest.mock import MagicMock

import pytest
from nameko.testing.services import worker_factory

from services.gateway.service import GatewayService
from services.patrons.errors import PatronNotFound

RECORD = {"patron": {"id": 7, "name": "海津 花子"}, "access_record": [{"seq": 1, "action": "create"}]}
LOANS = [{"loan_id": 3, "title": "こころ"}]


@pytest.fixture
def gateway():
    service = worker_factory(GatewayService)
    service.patrons.export_patron.return_value = RECORD
    service.loans.patron_loans.return_value = LOANS
    return service


def asked(gateway):
    """The export's calls to the patrons and loans services, in the order they are made."""
    order = []
    gateway.patrons.export_patron.side_effect = lambda patron_id: order.append(("patrons", patron_id)) or RECORD
    gateway.loans.patron_loans.side_effect = lambda patron_id: order.append(("loans", patron_id)) or LOANS
    return order


def test_an_export_is_the_patrons_record_and_access_record_and_the_loans_in_the_api_shape(gateway):
    order = asked(gateway)
    export = gateway.export_patron(MagicMock(), 7)
    assert list(export) == ["patron", "loans", "access_record"]
    assert export == {"patron": RECORD["patron"], "loans": LOANS, "access_record": RECORD["access_record"]}
    # The patrons service first: it checks the caller may see the patron and records the export.
    assert order == [("patrons", 7), ("loans", 7)]


def test_no_loans_are_asked_for_a_patron_the_caller_may_not_see(gateway):
    gateway.patrons.export_patron.side_effect = PatronNotFound(details={"patron_id": 7})
    with pytest.raises(PatronNotFound):
        gateway.export_patron(MagicMock(), 7)
    assert not gateway.loans.patron_loans.called


def test_a_deletion_goes_through_the_loans_service_which_knows_what_is_on_loan(gateway):
    response = gateway.delete_patron(MagicMock(), 7)
    assert response.status_code == 204
    gateway.loans.erase_patron.assert_called_once_with(7)
    assert gateway.patrons.mock_calls == []
