"""The desk's pages for patrons without a card at hand (issue 13): register a new patron and print their card, its
number as an NW-7 barcode; find one who forgot their card by the reading of their name and their birth date. Each
wrong field is named next to it in Japanese. Through the running system, on SQLite and PostgreSQL."""
import random
import re
from html import unescape

import pytest

from support import codabar_characters, patrons_know, register_patron, text_of, unique
from test_desk import Desk

KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワ"
FORM = {"name": "登録 太郎", "name_kana": "トウロク タロウ", "birth_date": "1985-06-15", "sex": "male",
        "address": "試験県試験市本町1-2-3", "alt_address": "", "phone": "0584-12-3456", "email": "",
        "home_library": "main", "category": "adult", "pin": ""}


@pytest.fixture
def desk(system):
    at_desk = Desk(system)
    at_desk.log_in()
    yield at_desk
    at_desk.http.close()


def katakana_reading():
    """A reading no other test's patron has: a namesake would be found too."""
    return "".join(random.choices(KATAKANA, k=6)) + " " + "".join(random.choices(KATAKANA, k=4))


def as_hiragana(katakana):
    return "".join(chr(ord(letter) - 0x60) if "ァ" <= letter <= "ヶ" else letter for letter in katakana)


def field_error(page, field):
    """The message shown next to ``field``, or None."""
    found = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page.text)
    return unescape(found.group(1)) if found else None


def input_value(page, field):
    return unescape(re.search(rf'<input id="{field}" name="{field}"[^>]* value="([^"]*)"', page.text).group(1))


def test_a_patron_registered_at_the_desk_gets_a_card_with_the_number_as_an_nw7_barcode(system, staff, desk):
    form = desk.get("/desk/register")
    assert form.status_code == 200 and '<option value="main" selected>' in form.text
    card = desk.post("/desk/register", **{**FORM, "phone": "０５８４－１２－３４５６", "pin": "8264"})
    assert card.status_code == 200, text_of(card)
    card_number = re.search(r'<p class="card-number">([0-9]{12})</p>', card.text).group(1)
    found = staff.get(f"{system.url}/api/v1/patrons", params={"card_number": card_number}, timeout=10)
    [patron] = found.json()["items"]
    assert (patron["name"], patron["phone"], patron["email"], patron["alt_address"]) == (
        "登録 太郎", "0584-12-3456", None, None)
    said = text_of(card)
    assert "登録 太郎 さんの利用カード" in said and f"有効期限 {patron['expires_on']}" in said
    assert "style=" not in card.text  # the page's CSP would block it

    image = re.search(r'<img class="card-barcode" src="([^"]+)"\s+alt="([^"]+)"', card.text)
    assert image.group(1) == f"/desk/cards/{patron['id']}/barcode.svg" and card_number in image.group(2)
    barcode = desk.get(image.group(1))
    assert barcode.status_code == 200 and barcode.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert "script-src" not in barcode.headers["Content-Security-Policy"]
    assert barcode.headers["Cache-Control"] == "no-store" and b"<script" not in barcode.content
    assert codabar_characters(barcode.content) == f"A{card_number}A"

    desk_screen = desk.post("/desk/patron", card_number=card_number)  # the card page's button
    assert desk_screen.status_code == 200 and "登録 太郎" in text_of(desk_screen)
    logged_in = staff.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                           json={"card_number": card_number, "pin": "8264"})
    assert logged_in.status_code == 200


@pytest.mark.parametrize("field, typed, message", [
    ("name", "", "氏名を入力してください"),
    ("name_kana", "toroku taro", "よみがなはカタカナかひらがなで入力してください"),
    ("name_kana", "", "よみがなを入力してください"),
    ("birth_date", "1985-13-40", "生年月日を正しく入力してください"),
    ("birth_date", "1850-01-01", "生年月日を正しく入力してください"),
    ("birth_date", "", "生年月日を入力してください"),
    ("address", "", "住所を入力してください"),
    ("phone", "電話なし", "電話番号を正しく入力してください（例：0584-12-3456）"),
    ("phone", "", "電話番号を入力してください"),
    ("email", "taro-at-example", "メールアドレスを正しく入力してください"),
    ("home_library", "nowhere", "登録館を選んでください"),
    ("category", "visitor", "利用者区分を選んでください"),
    ("pin", "12", "暗証番号は4〜8桁の数字で入力してください"),
    ("pin", "1234", "推測されやすい暗証番号（0000、1234 など）は使えません。別の番号にしてください。"),
])
def test_a_wrong_field_is_named_next_to_it_in_japanese_and_the_form_keeps_what_was_typed(desk, field, typed,
                                                                                          message):
    refused = desk.post("/desk/register", **{**FORM, "email": "taro@example.jp", "pin": "8264", field: typed})
    assert refused.status_code == 400
    assert field_error(refused, field) == message
    assert [other for other in FORM if other != field and field_error(refused, other)] == []
    assert "入力内容を確認してください" in text_of(refused) and f'<a href="#{field}">' in refused.text
    for kept in ("name", "name_kana", "address", "email"):
        assert input_value(refused, kept) == (typed if kept == field else {**FORM, "email": "taro@example.jp"}[kept])
    assert input_value(refused, "pin") == ""  # never sent back


def test_a_patron_who_forgot_their_card_is_found_by_reading_and_birth_date_and_not_their_namesake(staff, desk):
    reading = katakana_reading()
    patron = register_patron(staff, name="忘札 花子", name_kana=as_hiragana(reading), birth_date="1972-03-09")
    namesake = register_patron(staff, name="忘札 花", name_kana=reading, birth_date="1972-03-10")
    assert desk.get("/desk/find").status_code == 200
    found = desk.post("/desk/find", name_reading=reading.replace(" ", ""), birth_date="1972-03-09")
    said = text_of(found)
    assert found.status_code == 200 and "該当する利用者：1 人" in said
    assert all(shown in said for shown in ("忘札 花子", as_hiragana(reading), "1972-03-09", "試験市立図書館",
                                           "****" + patron["card_number"][-4:]))
    assert namesake["birth_date"] not in said and "****" + namesake["card_number"][-4:] not in said
    opened = desk.post("/desk/patron", card_number=re.search(
        r'name="card_number" value="([0-9]{12})"', found.text).group(1))
    assert opened.status_code == 200 and "忘札 花子" in text_of(opened)

    nobody = desk.post("/desk/find", name_reading=reading, birth_date="1972-03-11")
    assert nobody.status_code == 200 and "このよみがなと生年月日の利用者はいません。" in text_of(nobody)


@pytest.mark.parametrize("reading, birth_date, messages", [
    ("ワスレフダ", "", {"birth_date": "生年月日を入力してください"}),
    ("wasurefuda", "1972-03-09", {"name_reading": "よみがなはカタカナかひらがなで入力してください"}),
    ("", "", {"name_reading": "よみがなを入力してください", "birth_date": "生年月日を入力してください"}),
    ("ワスレフダ", "1972-02-30", {"birth_date": "生年月日を正しく入力してください"}),
])
def test_a_look_up_refused_says_why_next_to_the_field_in_japanese(desk, reading, birth_date, messages):
    refused = desk.post("/desk/find", name_reading=reading, birth_date=birth_date)
    assert refused.status_code == 400
    assert {field: field_error(refused, field) for field in ("name_reading", "birth_date")
            if field_error(refused, field)} == messages
    assert input_value(refused, "name_reading") == reading


def test_the_patron_pages_and_the_barcode_are_for_signed_in_staff_only(system, staff):
    patron = register_patron(staff)
    stranger = Desk(system)
    for path in ("/desk/find", "/desk/register", f"/desk/cards/{patron['id']}",
                 f"/desk/cards/{patron['id']}/barcode.svg"):
        assert stranger.get(path).status_code == 303, path
    stranger.http.close()



def test_a_school_librarian_registers_only_the_schools_own_patrons(system, staff):
    school = unique("s").lower()[:12]
    assert staff.post(f"{system.url}/api/v1/libraries", timeout=10,
                      json={"code": school, "name": "登録小学校", "kind": "school"}).status_code == 201
    patrons_know(system, school)
    username = unique("desk-school-")
    assert staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": "a-long-password-2", "role": "school_librarian",
        "libraries": [school]}).status_code == 201
    school_desk = Desk(system)
    school_desk.log_in(library=school, username=username, password="a-long-password-2")
    assert f'<option value="{school}" selected>' in school_desk.get("/desk/register").text
    refused = school_desk.post("/desk/register", **FORM)  # a patron of the main library
    assert refused.status_code == 403
    assert field_error(refused, "home_library") == "このアカウントでは、この図書館の利用者は登録できません"
    assert school_desk.post("/desk/register", **{**FORM, "home_library": school}).status_code == 200
    school_desk.http.close()
