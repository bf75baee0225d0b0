"""What the desk's look-up by name reading and a patron's own changes accept, without a broker or a database:
the reading folded so that the desk need not type it as it was registered, the look-up keys given one way at a
time, and my page changing the e-mail address alone."""
import pytest

from services.patrons.rules import pin_refusal, reading_key
from services.patrons.schemas import OwnRecordChangeSchema, PatronLookupSchema, PinChangeSchema
from shiori.errors import InvalidInput, load


@pytest.mark.parametrize("typed", ["シケン ハナコ", "しけん はなこ", "シケンハナコ", "シケン・ハナコ", "ｼｹﾝ ﾊﾅｺ",
                                   "ｼｹﾝ･ﾊﾅｺ", "シケン\u3000ハナコ", "しけんハナコ", " シケン  ハナコ "])
def test_a_reading_is_the_same_however_the_desk_types_it(typed):
    assert reading_key(typed) == "しけんはなこ"


def test_voiced_marks_small_kana_and_the_long_vowel_mark_are_part_of_the_sound():
    assert reading_key("ｶﾞｰﾃﾞﾝ") == reading_key("ガーデン") == "がーでん"
    assert reading_key("ヴィヴァルディ") == "ゔぃゔぁるでぃ"
    assert reading_key("キヨウ") != reading_key("キョウ")
    assert reading_key("サトウ") != reading_key("サトオ")


def test_the_iteration_marks_fold_too():
    assert reading_key("サヽキ") == reading_key("さゝき")


def lookup(**query):
    return load(PatronLookupSchema(), query)


def refused_fields(schema, payload):
    with pytest.raises(InvalidInput) as refused:
        load(schema, payload)
    return refused.value.details


def test_a_look_up_by_reading_takes_the_birth_date_with_it():
    found_by = lookup(name_reading="ｼｹﾝ ﾊﾅｺ", birth_date="1990-04-01")
    assert (found_by["name_reading"], found_by["birth_date"].isoformat()) == ("ｼｹﾝ ﾊﾅｺ", "1990-04-01")
    assert list(refused_fields(PatronLookupSchema(), {"name_reading": "シケンハナコ"})) == ["birth_date"]
    assert list(refused_fields(PatronLookupSchema(), {"birth_date": "1990-04-01"})) == ["name_reading"]


def test_a_look_up_uses_one_key_at_a_time():
    assert list(refused_fields(PatronLookupSchema(), {})) == ["card_number"]
    both = {"phone": "0584-12-3456", "name_reading": "シケンハナコ", "birth_date": "1990-04-01"}
    assert list(refused_fields(PatronLookupSchema(), both)) == ["card_number"]


def test_a_reading_in_latin_letters_or_a_date_that_is_none_is_refused_by_field():
    details = refused_fields(PatronLookupSchema(), {"name_reading": "Shiken Hanako", "birth_date": "1990-02-30"})
    assert set(details) == {"name_reading", "birth_date"}


def test_my_page_changes_the_email_address_or_removes_it():
    assert load(OwnRecordChangeSchema(), {"email": "hanako@example.jp"}) == {"email": "hanako@example.jp"}
    assert load(OwnRecordChangeSchema(), {"email": None}) == {"email": None}


def test_my_page_refuses_every_other_field_by_name_and_says_where_it_is_changed():
    details = refused_fields(OwnRecordChangeSchema(), {"email": "not an address", "name": "別人", "pin": "8303",
                                                       "status": "active"})
    assert set(details) == {"email", "name", "pin", "status"}
    assert "desk" in details["name"][0] and "PUT /api/v1/me/pin" in details["pin"][0]
    assert list(refused_fields(OwnRecordChangeSchema(), {})) == ["email"]


def test_a_pin_change_takes_the_current_pin_and_a_new_one_of_four_to_eight_digits():
    assert load(PinChangeSchema(), {"current_pin": "8303", "new_pin": "30718"}) == {"current_pin": "8303",
                                                                                   "new_pin": "30718"}
    assert set(refused_fields(PinChangeSchema(), {"new_pin": "12"})) == {"current_pin", "new_pin"}
    assert list(refused_fields(PinChangeSchema(), {"current_pin": "8303", "new_pin": "30718", "card": 1})) == ["card"]


def test_a_common_new_pin_is_refused_under_the_field_it_came_in():
    assert list(pin_refusal("1234", "new_pin").details) == ["new_pin"]
