"""The residents' catalogue as web pages, served by the OPAC process (issue 13, first part): a search box,
results with pages and availability, a work with every copy, in Japanese or English; pages that set no cookie,
fetch nothing from elsewhere and send no Referer. Through the running system, on SQLite and PostgreSQL."""
import re
from html import unescape
from urllib.parse import unquote

import pytest
import requests

from support import add_copy, check_in, check_out, register_patron, unique, wait_until

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def get(system, path, **params):
    response = requests.get(f"{system.opac_url}{path}", params=params, timeout=10)
    assert "Set-Cookie" not in response.headers  # an anonymous visit leaves nothing behind
    return response


def text_of(response):
    """The page's visible text, tags dropped, whitespace folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def test_the_front_page_is_a_search_box_in_japanese_with_english_a_link_away(system):
    page = get(system, "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<html lang="ja">' in page.text and "蔵書を探す" in text_of(page)
    assert '<input id="q" name="q" type="search"' in page.text and '<label for="q">' in page.text
    assert "試験市立図書館" in text_of(page)  # the tenant's libraries
    assert 'href="/?lang=en"' in page.text
    english = get(system, "/", lang="en")
    assert '<html lang="en">' in english.text and "Search the catalogue" in text_of(english)
    assert '<input type="hidden" name="lang" value="en">' in english.text  # the search stays in English
    assert 'href="/"' in english.text  # and 日本語 is a link back
    assert get(system, "/", lang="xx").text == page.text  # a language it has not: the default


def test_every_page_carries_the_privacy_headers_and_asks_nothing_of_other_sites(system):
    for path in ("/", "/search?q=本", "/works/999999", "/static/opac.css"):
        response = get(system, path)
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS, path
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text), path
    assert get(system, "/static/opac.css").headers["Content-Type"].startswith("text/css")
    assert get(system, "/static/../service.py").status_code == 404
    assert get(system, "/static/nothing.css").status_code == 404


def test_search_results_link_each_work_show_availability_and_go_page_by_page(system, staff):
    word = unique("ページ試験")
    works = [add_copy(staff, title=f"{word} 第{number}巻")[0] for number in range(1, 24)]
    first = get(system, "/search", q=word)
    assert first.status_code == 200
    assert f"「{word}」の検索結果" in first.text and "23件見つかりました" in text_of(first)
    linked = [int(found) for found in re.findall(r'href="/works/(\d+)"', first.text)]
    assert len(linked) == 20 and set(linked) <= {work["id"] for work in works}
    assert "在架 1 / 所蔵 1" in text_of(first) and "1 / 2ページ" in text_of(first)
    following = re.search(r'<a rel="next" href="([^"]+)"', first.text).group(1)
    second = get(system, unescape(following))
    assert "2 / 2ページ" in text_of(second) and len(re.findall(r'href="/works/\d+"', second.text)) == 3
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    english = get(system, "/search", q=word, lang="en")
    assert "23 works found" in text_of(english) and "On the shelf: 1 of 1" in text_of(english)
    assert re.search(r'href="/works/\d+\?lang=en"', english.text)


def test_a_work_shows_every_copy_and_a_lent_one_only_as_lent_with_its_due_date(system, staff):
    work, lent = add_copy(staff, title=unique("目録ページの本 "))
    other = staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
        "barcode": unique("T"), "work_id": work["id"], "library": "east", "call_number": "913.6/ナ",
        "shelf_location": "児童書架"})
    assert other.status_code == 201
    patron = register_patron(staff)
    due = check_out(staff, patron["card_number"], lent["barcode"]).json()["due_date"]
    wait_until(lambda: "貸出中" in text_of(get(system, f"/works/{work['id']}")), message="the copy shown as lent")
    page = get(system, f"/works/{work['id']}")
    shown = text_of(page)
    assert work["title"] in shown and "試験 作者" in shown and "試験書房" in shown
    assert f"貸出中 (返却予定日 {due})" in shown
    assert "試験市立図書館 東分館" in shown and "児童書架" in shown and "913.6/ナ" in shown and "在架" in shown
    for private in (patron["name"], patron["name_kana"], patron["card_number"], lent["barcode"]):
        assert private not in page.text
    check_in(staff, lent["barcode"])
    wait_until(lambda: "貸出中" not in text_of(get(system, f"/works/{work['id']}")), message="the copy back")


@pytest.mark.parametrize(("path", "params", "status", "says"), [
    ("/works/999999", {}, 404, "見つかりません"),
    ("/no-such-page", {}, 404, "見つかりません"),
    ("/search", {"q": "本", "page": "0"}, 400, "検索の条件を確かめてください"),
    ("/search", {"q": "本", "page": "two"}, 400, "検索の条件を確かめてください"),
    ("/search", {"q": "x" * 201}, 400, "検索の条件を確かめてください"),
])
def test_a_page_that_cannot_be_answered_says_why_as_a_page(system, path, params, status, says):
    response = get(system, path, **params)
    assert response.status_code == status and response.headers["Content-Type"].startswith("text/html")
    assert says in text_of(response) and 'href="/"' in response.text


def test_unknown_api_paths_still_answer_in_the_api_error_shape(system):
    response = get(system, "/api/v1/no-such-route")
    assert response.status_code == 404 and response.json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_an_empty_search_is_the_front_page(system):
    assert "蔵書を探す" in text_of(get(system, "/search", q="  "))


def test_a_field_search_finds_by_author_and_keeps_its_fields_page_by_page(system, staff):
    author = unique("著者")
    for number in range(1, 23):
        work = staff.post(f"{staff.base_url}/api/v1/works", timeout=10, json={
            "title": f"項目検索の本 {number}", "authors": [{"name": author}]}).json()
        assert staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
            "barcode": unique("F"), "work_id": work["id"], "library": "main"}).status_code == 201
    found = get(system, "/search", author=author)
    assert found.status_code == 200 and "22件見つかりました" in text_of(found)
    assert f'<input id="field-author" name="author" type="text" value="{author}"' in found.text
    following = unescape(re.search(r'<a rel="next" href="([^"]+)"', found.text).group(1))
    assert f"author={author}" in unquote(following) and "q=" not in following
    assert "22件見つかりました" in text_of(get(system, following))
    assert "0件見つかりました" in text_of(get(system, "/search", author=author, title="ありえない書名"))


def add_work(staff, library, **record):
    work = staff.post(f"{staff.base_url}/api/v1/works", timeout=10, json=record)
    assert work.status_code == 201, work.text
    assert staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
        "barcode": unique("N"), "work_id": work.json()["id"], "library": library}).status_code == 201
    return work.json()


def facet_links(page):
    """{link text: href} of the page's facets."""
    facets = page.text[page.text.index('<section class="facets"'):]
    return {" ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split()): unescape(href)
            for href, text in re.findall(r'<a href="([^"]+)">(.*?)</a>', facets)}


def test_facets_are_links_that_narrow_the_results_keep_the_search_and_the_language(system, staff):
    word = unique("絞込")
    add_work(staff, "main", title=f"{word} 物語", ndc="913.6", published_year=1995)
    add_work(staff, "main", title=f"{word} 歴史", ndc="210.1", published_year=2003)
    add_work(staff, "east", title=f"{word} 詩集", ndc="911.5", published_year=2008)
    page = get(system, "/search", q=word, lang="en")
    links = facet_links(page)
    assert {"試験市立図書館 (2)", "試験市立図書館 東分館 (1)", "2 History (1)", "9 Literature (2)", "1990s (1)",
            "2000s (2)"} <= set(links)
    assert "Only those on the shelf now (3)" in text_of(page)
    literature = links["9 Literature (2)"]
    assert "ndc_class=9" in literature and "lang=en" in literature and word in unquote(literature)
    narrowed = get(system, literature)
    assert "2 works found" in text_of(narrowed) and f"{word} 歴史" not in narrowed.text
    # Within it, the library's link keeps the class, and the class is shown as chosen with a way back.
    east = facet_links(narrowed)["試験市立図書館 東分館 (1)"]
    assert "ndc_class=9" in east and "library=east" in east
    at_east = get(system, east)
    assert "1 works found" in text_of(at_east) and f"{word} 詩集" in at_east.text
    back = facet_links(at_east)["Every subject"]
    assert "ndc_class" not in back and "library=east" in back
    decade = get(system, facet_links(page)["2000s (2)"])
    assert "2 works found" in text_of(decade) and f"{word} 物語" not in decade.text
    assert 'id="year_from" name="year_from" type="number"' in decade.text and 'value="2000"' in decade.text


def test_the_order_and_the_filters_are_a_plain_form_whose_answer_is_bookmarkable(system, staff):
    word = unique("並替")
    for year in (1990, 2010, 2000):
        add_work(staff, "main", title=f"{word} {year}年版", published_year=year)
    page = get(system, "/search", q=word)
    form = page.text[page.text.index('<form class="narrow"'):page.text.index("</form>", page.text.index('<form class="narrow"'))]
    assert 'method="get"' in form and f'<input type="hidden" name="q" value="{word}">' in form
    assert '<label for="sort">並び順</label>' in form and '<label for="available">' in form
    assert '<option value="relevance" selected>' in form
    assert "<script" not in page.text
    newest = get(system, "/search", q=word, sort="newest")
    shown = [int(year) for year in re.findall(rf"{word} (\d+)年版</a>", newest.text)]
    assert shown == [2010, 2000, 1990] and '<option value="newest" selected>' in newest.text
    ranged = get(system, "/search", q=word, sort="newest", year_from="1995", year_to="2005", available="true")
    assert re.findall(rf"{word} (\d+)年版</a>", ranged.text) == ["2000"]
    assert 'name="available" type="checkbox" value="true" checked' in ranged.text
    assert "1件見つかりました" in text_of(ranged)
    assert get(system, "/search", q=word, year_from="2005", year_to="1995").status_code == 400
    assert get(system, "/search", q=word, sort="oldest").status_code == 400
