"""The gateway: domain errors arrive as themselves, every code has a status in the one table, lists are paged."""
import pytest
from nameko.exceptions import deserialize, serialize

import services.gateway.errors as gateway_errors
from services.loans.errors import ItemAlreadyOnLoan
from shiori.errors import DomainError, InvalidInput


def all_subclasses(cls):
    for subclass in cls.__subclasses__():
        yield subclass
        yield from all_subclasses(subclass)


def test_every_domain_error_has_a_status_in_the_one_table():
    codes = {error.code for error in all_subclasses(DomainError)}
    assert codes - set(gateway_errors.STATUS_BY_CODE) == set()


@pytest.mark.parametrize("error", [ItemAlreadyOnLoan(details={"item_barcode": "K1"}),
                                   InvalidInput(details={"name": ["required"]})])
def test_errors_arrive_as_themselves_with_their_details(error):
    arrived = deserialize(serialize(error))
    assert type(arrived) is type(error)
    assert (arrived.code, arrived.message, arrived.details) == (error.code, error.message, error.details)


def test_error_responses_have_the_api_shape():
    response = gateway_errors.error_response(ItemAlreadyOnLoan(details={"item_barcode": "K1"}))
    assert response.status_code == 409
    assert response.get_json() == {"error": {"code": "ITEM_ALREADY_ON_LOAN", "message": "この資料は貸出中です",
                                             "details": {"item_barcode": "K1"}}}


def test_lists_are_paged_in_the_api_shape():
    from services.gateway.schemas import page_of

    items = list(range(45))
    assert page_of(items, {}) == {"items": list(range(20)), "total": 45, "page": 1, "per_page": 20}
    assert page_of(items, {"page": "3", "per_page": "20"})["items"] == list(range(40, 45))
    for bad in ({"per_page": "101"}, {"page": "0"}, {"page": "x"}):
        with pytest.raises(InvalidInput):
            page_of(items, bad)
