"""Every page of the residents' catalogue, a resident's own pages and the desk pass axe-core (Deque's accessibility
engine, run in the browser on the page as rendered, in both languages and at a phone's width): no serious or
critical violation. The engine is vendored (tests/browser/vendor/axe.min.js, axe-core 4.14.1, MPL-2.0) so that the check is the same everywhere."""
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import ADMIN
from support import add_copy, check_out, register_patron, unique, wait_until

AXE = (Path(__file__).resolve().parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
GRAVE = ("serious", "critical")


def violations(browser):
    browser.execute_script(AXE)
    browser.set_script_timeout(30)
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));")
    assert isinstance(found, list), found
    return [(violation["id"], violation["impact"], [node["target"] for node in violation["nodes"]][:3])
            for violation in found if violation["impact"] in GRAVE]


@pytest.fixture(scope="module")
def pages(system, staff):
    """The paths of every kind of page: the front page, results over two pages, results narrowed by every
    filter, a work with a lent copy and one on the shelf, and an error page."""
    word = unique("アクセシビリティ")
    works = [add_copy(staff, title=f"{word} {number}")[0] for number in range(1, 23)]
    _work, second = add_copy(staff, title=f"{word} 貸出中の本")
    check_out(staff, register_patron(staff)["card_number"], second["barcode"])
    return ["/", f"/search?q={word}", f"/search?q={word}&page=2",
            f"/search?q={word}&library=main&available=true&ndc_class=9&year_from=2000&year_to=2030&sort=newest",
            f"/works/{works[0]['id']}",
            f"/works/{_work['id']}", "/works/999999", "/search?q=x&page=0"]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_no_page_has_a_serious_or_critical_accessibility_violation(system, pages, browser, phone, lang):
    for opened in (browser, phone):
        for path in pages:
            opened.get(f"{system.opac_url}{path}{'&' if '?' in path else '?'}lang={lang}")
            assert violations(opened) == [], (path, lang, opened.get_window_size())


def test_the_check_finds_what_it_looks_for(browser):
    """A page with an unlabelled search box and an image without words fails it (the check can fail)."""
    browser.get("data:text/html;charset=utf-8,<!doctype html><html lang='ja'><title>t</title>"
                "<main><input type='search'><img src='x.png'></main></html>")
    assert {rule for rule, _impact, _where in violations(browser)} >= {"label", "image-alt"}


def log_in_at_the_opac(opened, system, card_number, pin):
    opened.get(f"{system.opac_url}/login")
    opened.find_element(By.ID, "card_number").send_keys(card_number)
    opened.find_element(By.ID, "pin").send_keys(pin, Keys.ENTER)
    wait_until(lambda: opened.current_url.endswith("/my"), message="my page")


def test_a_residents_own_pages_have_no_serious_or_critical_violation(system, staff, browser, phone):
    patron = register_patron(staff, pin="4827")
    work, item = add_copy(staff, title=unique("利用状況の本 "))
    check_out(staff, patron["card_number"], item["barcode"])
    for opened in (browser, phone):
        opened.get(f"{system.opac_url}/login")
        assert violations(opened) == [], ("/login", opened.get_window_size())
        log_in_at_the_opac(opened, system, patron["card_number"], "4827")
        for path in ("/my", "/my/settings", "/my/access-log", f"/works/{work['id']}", "/my?lang=en"):
            opened.get(system.opac_url + path)
            assert violations(opened) == [], (path, opened.get_window_size())


def test_the_desk_has_no_serious_or_critical_violation(system, staff, browser):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    browser.get(f"{system.url}/desk/login")
    assert violations(browser) == [], "/desk/login"
    browser.find_element(By.ID, "username").send_keys(ADMIN["username"])
    browser.find_element(By.ID, "password").send_keys(ADMIN["password"], Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.ID, "card_number"), message="the desk")
    assert violations(browser) == [], "/desk"
    browser.find_element(By.ID, "card_number").send_keys(patron["card_number"], Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.ID, "item_barcode"), message="the patron")
    browser.find_element(By.ID, "item_barcode").send_keys(item["barcode"], Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".feedback .done"), message="the loan")
    assert violations(browser) == [], "the patron with a loan"
    browser.find_element(By.ID, "item_barcode").send_keys("NO-SUCH-COPY", Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".feedback .refusal"), message="the refusal")
    assert violations(browser) == [], "a refusal"
    browser.get(f"{system.url}/desk/checkin")
    browser.find_element(By.ID, "item_barcode").send_keys(item["barcode"], Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".instruction"), message="the check-in")
    assert violations(browser) == [], "/desk/checkin"


DESK_PAGES = ("/desk/find", "/desk/register", "/desk/lists", "/desk/lists/hold-shelf", "/desk/lists/to-send",
              "/desk/lists/pull", "/desk/lists/in-transit", "/desk/lists/phone", "/desk/admin",
              "/desk/admin/libraries", "/desk/admin/libraries/main/calendar", "/desk/admin/closures",
              "/desk/admin/loan-rules", "/desk/admin/staff", "/desk/admin/notices")


def test_every_other_desk_page_has_no_serious_or_critical_violation(system, staff, browser, phone):
    for opened in (browser, phone):
        opened.get(f"{system.url}/desk/login")
        opened.find_element(By.ID, "username").send_keys(ADMIN["username"])
        opened.find_element(By.ID, "password").send_keys(ADMIN["password"], Keys.ENTER)
        wait_until(lambda: opened.find_elements(By.ID, "card_number"), message="the desk")
        for path in DESK_PAGES:
            opened.get(system.url + path)
            assert opened.find_elements(By.TAG_NAME, "h1"), path
            assert violations(opened) == [], (path, opened.get_window_size())
        opened.get(f"{system.url}/desk/register")
        opened.find_element(By.ID, "name").send_keys("試験 太郎", Keys.ENTER)  # the rest left out: refused
        wait_until(lambda: opened.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]"), message="the refusal")
        assert violations(opened) == [], ("a refused registration", opened.get_window_size())
    patron = register_patron(staff)
    browser.get(f"{system.url}/desk/cards/{patron['id']}")
    assert violations(browser) == [], "a new card"
