"""The desk's patron forms (services/gateway/desk_patrons.py): what the registration form sends the patrons
service, which fields a refusal is about, and the card's NW-7 barcode."""
from support import codabar_characters

from services.gateway.desk_patrons import card_barcode_svg, field_problems, registration_payload
from services.patrons.errors import PinTooCommon
from shiori.errors import Forbidden, InvalidInput

TYPED = {"name": " 試験 花子 ", "name_kana": "しけん はなこ", "birth_date": "１９９０-０４-０１", "sex": "female",
         "address": "試験市本町1-2-3", "alt_address": "", "phone": "０５８４－１２－３４５６", "email": "",
         "home_library": "main", "category": "adult", "pin": ""}


def test_the_form_is_sent_trimmed_narrowed_and_without_what_was_left_out():
    assert registration_payload(TYPED) == {
        "name": "試験 花子", "name_kana": "しけん はなこ", "birth_date": "1990-04-01", "sex": "female",
        "address": "試験市本町1-2-3", "alt_address": None, "phone": "0584-12-3456", "email": None,
        "home_library": "main", "category": "adult"}


def test_a_pin_is_sent_when_one_is_typed_and_an_empty_required_field_is_sent_empty_for_the_service_to_name():
    payload = registration_payload({**TYPED, "pin": "８２４６", "name": "  "})
    assert payload["pin"] == "8246" and payload["name"] == ""


def test_a_refused_field_left_empty_is_missing_and_one_filled_in_is_wrong_by_the_refusals_code():
    refusal = InvalidInput(details={"name": ["Shorter than minimum length 1."], "phone": ["a phone number"]})
    assert field_problems(refusal, {**TYPED, "name": " ", "phone": "12"}) == {
        "name": "missing", "phone": "VALIDATION_ERROR"}


def test_a_named_refusal_is_shown_at_its_field_and_details_naming_no_field_of_the_form_at_none():
    assert field_problems(PinTooCommon(details={"pin": ["too easy"]}), {**TYPED, "pin": "1234"}) == {
        "pin": "PIN_TOO_COMMON"}
    assert field_problems(Forbidden(details={"route": "x"}), TYPED) == {}
    assert field_problems(None, TYPED) == {}


def test_the_card_barcode_is_the_number_between_nw7_start_and_stop_characters_a():
    assert codabar_characters(card_barcode_svg("123456789012")) == "A123456789012A"
