"""The residents' "my page" and the circulation desk in a real browser (issue 13): a resident logs in, renews,
places and cancels a hold, logs out; staff log in at the desk, check out three copies by "scanning" (a scanner
types the number and Enter) — first registering the patron, whose new card shows its NW-7 barcode — check
them in and read the hold-shelf instruction. Keyboard and Enter, as at the
desk."""
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import ADMIN
from support import add_copy, check_out, register_patron, wait_until

PIN = "4827"


def text(browser):
    """The page's main text; nothing while the page is being replaced by the next one."""
    try:
        return browser.find_element(By.TAG_NAME, "main").text
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def shows(browser, words, what):
    wait_until(lambda: words in text(browser), message=what)


def scan(browser, field_id, number):
    """What a barcode scanner does: types the number into the focused field, then Enter."""
    field = browser.switch_to.active_element
    assert field.get_attribute("id") == field_id, "the field for the next scan has the focus"
    field.send_keys(number, Keys.ENTER)


def test_a_resident_renews_places_and_cancels_a_hold_and_logs_out(system, staff, browser):
    patron = register_patron(staff, pin=PIN)
    lent, mine = add_copy(staff)
    assert check_out(staff, patron["card_number"], mine["barcode"]).status_code == 201
    wanted, theirs = add_copy(staff)
    assert check_out(staff, register_patron(staff)["card_number"], theirs["barcode"]).status_code == 201

    browser.get(system.opac_url + "/")
    browser.find_element(By.LINK_TEXT, "ログイン").click()
    browser.find_element(By.ID, "card_number").send_keys(patron["card_number"])
    browser.find_element(By.ID, "pin").send_keys(PIN, Keys.ENTER)
    wait_until(lambda: browser.current_url.endswith("/my"), message="my page")
    assert lent["title"] in text(browser)

    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='「{lent['title']}」を延長する']").click()
    shows(browser, "貸出を延長しました。", "the renewal")

    browser.get(f"{system.opac_url}/works/{wanted['id']}")
    browser.find_element(By.ID, "pickup_library").send_keys("試験市立図書館 東分館")
    browser.find_element(By.XPATH, "//button[text()='予約する']").click()
    shows(browser, "予約しました。", "the hold")
    assert wanted["title"] in text(browser) and "受取館：試験市立図書館 東分館" in text(browser)

    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='「{wanted['title']}」の予約を取り消す']").click()
    shows(browser, "予約を取り消しました。", "the cancellation")
    assert "予約はありません。" in text(browser)

    browser.find_element(By.XPATH, "//button[text()='ログアウト']").click()
    shows(browser, "ログアウトしました。", "the log-out")
    assert browser.get_cookies() == []
    browser.get(system.opac_url + "/my")
    assert "/login" in browser.current_url


def test_staff_register_a_patron_check_out_three_copies_by_scanning_and_check_them_in(system, staff, browser):
    waiting = register_patron(staff)
    copies = [add_copy(staff) for _ in range(3)]
    held_work, held_copy = copies[2]

    browser.get(system.url + "/desk")
    browser.find_element(By.ID, "username").send_keys(ADMIN["username"])
    browser.find_element(By.ID, "password").send_keys(ADMIN["password"], Keys.ENTER)
    shows(browser, "利用カードをスキャン", "the desk")
    browser.find_element(By.LINK_TEXT, "新しい利用者を登録する").click()
    for field, typed in (("name", "ブラウザ 登録子"), ("name_kana", "ぶらうざ とうろくこ"),
                         ("address", "岐阜県海津市海津町高須515"), ("phone", "0584-53-1111")):
        browser.find_element(By.ID, field).send_keys(typed)
    # A date field's segments follow the browser's locale (headless Chromium's is en-US's): set it as the picker does.
    browser.execute_script("arguments[0].value = '1988-05-17'", browser.find_element(By.ID, "birth_date"))
    browser.find_element(By.ID, "phone").send_keys(Keys.ENTER)
    shows(browser, "ブラウザ 登録子", "the new card")
    card_number = browser.find_element(By.CSS_SELECTOR, ".card-number").text
    assert card_number.isdigit() and browser.find_element(By.CSS_SELECTOR, "img.card-barcode").get_attribute(
        "naturalWidth") != "0"  # the NW-7 barcode was drawn
    browser.find_element(By.LINK_TEXT, "貸出").click()
    scan(browser, "card_number", card_number)
    shows(browser, "ブラウザ 登録子", "the patron")
    for work, item in copies:
        scan(browser, "item_barcode", item["barcode"])
        shows(browser, f"貸出しました：{work['title']}", f"the loan of {item['barcode']}")
    assert browser.find_element(By.CSS_SELECTOR, ".patron").text.count("貸出中\n3") == 1

    # Someone holds the third work: when it comes back, it goes to the hold shelf with a slip.
    assert staff.post(f"{system.url}/api/v1/holds", timeout=10, json={
        "work_id": held_work["id"], "pickup_library": "main", "card_number": waiting["card_number"]}).status_code == 201
    browser.find_element(By.LINK_TEXT, "返却").click()
    for _work, item in copies[:2]:
        scan(browser, "item_barcode", item["barcode"])
        wait_until(lambda: item["barcode"] in text(browser), message=f"the return of {item['barcode']}")
        assert browser.find_element(By.CSS_SELECTOR, ".instruction").text == "棚へ"
    scan(browser, "item_barcode", held_copy["barcode"])
    wait_until(lambda: held_copy["barcode"] in text(browser), message="the held copy's return")
    assert browser.find_element(By.CSS_SELECTOR, ".instruction").text == "予約棚へ（予約票をはさむ）"
    assert waiting["name"] in browser.find_element(By.CSS_SELECTOR, ".slip").text
