"""The residents' catalogue in a real browser (issue 13): a resident types a search and presses Enter, pages
through the results, opens a work and sees its copies, and reads it all in English with one link, with the
keyboard alone; and the pages fit a phone's 360 px and load nothing from other sites."""
import json

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from support import add_copy, unique, wait_until


def focused(browser):
    return browser.switch_to.active_element


def test_a_resident_searches_pages_and_opens_a_work_with_the_keyboard(system, staff, browser):
    word = unique("ブラウザ試験")
    works = [add_copy(staff, title=f"{word} 第{number}巻")[0] for number in range(1, 23)]
    browser.get(system.opac_url + "/")
    assert browser.title == "図書館蔵書検索"
    focused(browser).send_keys(Keys.TAB)
    assert focused(browser).text == "本文へ移動"  # the first stop: straight to the content
    browser.find_element(By.ID, "q").send_keys(word, Keys.ENTER)
    wait_until(lambda: "/search" in browser.current_url, message="the results page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "22件見つかりました"
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol.results > li")) == 20
    browser.find_element(By.CSS_SELECTOR, "a[rel=next]").send_keys(Keys.ENTER)
    wait_until(lambda: "page=2" in browser.current_url, message="the second page")
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol.results > li")) == 2

    browser.find_element(By.CSS_SELECTOR, "ol.results a").send_keys(Keys.ENTER)
    wait_until(lambda: "/works/" in browser.current_url, message="the work's page")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(word)
    assert [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "table.copies td.status")] == ["在架"]
    assert int(browser.current_url.rsplit("/", 1)[1]) in {work["id"] for work in works}

    browser.find_element(By.LINK_TEXT, "English").click()
    wait_until(lambda: browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", message="English")
    assert browser.find_element(By.CSS_SELECTOR, "table.copies td.status").text == "On the shelf"
    assert browser.find_element(By.LINK_TEXT, "日本語").is_displayed()


def test_the_pages_fit_a_phone_and_load_nothing_from_elsewhere(system, staff, phone):
    work, _copy = add_copy(staff, title=unique("電話で見る本 "))
    for path in ("/", f"/search?q={work['title']}", f"/works/{work['id']}"):
        phone.get(system.opac_url + path)
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
            f"{path} scrolls sideways at 360 px"
    requested = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                 for entry in phone.get_log("performance")
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(system.opac_url) for url in requested), requested


def test_a_resident_narrows_the_results_by_a_facet_and_orders_them_newest_first(system, staff, browser):
    word = unique("絞り込み試験")
    for number, library, year in ((1, "main", 1999), (2, "east", 2012), (3, "east", 2004)):
        work = staff.post(f"{staff.base_url}/api/v1/works", timeout=10, json={
            "title": f"{word} 第{number}巻", "ndc": "913.6", "published_year": year}).json()
        assert staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
            "barcode": unique("B"), "work_id": work["id"], "library": library}).status_code == 201
    browser.get(system.opac_url + "/")
    browser.find_element(By.ID, "q").send_keys(word, Keys.ENTER)
    wait_until(lambda: "/search" in browser.current_url, message="the results page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "3件見つかりました"

    browser.find_element(By.PARTIAL_LINK_TEXT, "試験市立図書館 東分館").click()
    wait_until(lambda: "library=east" in browser.current_url, message="the library's results")
    assert browser.find_element(By.TAG_NAME, "h1").text == "2件見つかりました"
    shown = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "ol.results > li > a")]
    assert shown == [f"{word} 第2巻", f"{word} 第3巻"]

    Select(browser.find_element(By.ID, "sort")).select_by_value("newest")
    browser.find_element(By.ID, "year_to").send_keys("2010")
    browser.find_element(By.CSS_SELECTOR, "form.narrow button").click()
    wait_until(lambda: "sort=newest" in browser.current_url, message="the new order")
    assert "library=east" in browser.current_url  # the facet chosen is kept
    assert [link.text for link in browser.find_elements(By.CSS_SELECTOR, "ol.results > li > a")] == [f"{word} 第3巻"]
    browser.find_element(By.LINK_TEXT, "すべての図書館").click()
    wait_until(lambda: "library=" not in browser.current_url, message="every library again")
    assert [link.text for link in browser.find_elements(By.CSS_SELECTOR, "ol.results > li > a")] == \
        [f"{word} 第3巻", f"{word} 第1巻"]
