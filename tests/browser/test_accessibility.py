"""Every page of the residents' catalogue passes axe-core (Deque's accessibility engine, run in the browser on the
page as rendered, in both languages and at a phone's width): no serious or critical violation. The engine is
vendored (tests/browser/vendor/axe.min.js, axe-core 4.14.1, MPL-2.0) so that the check is the same everywhere."""
from pathlib import Path

import pytest

from support import add_copy, check_out, register_patron, unique

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
