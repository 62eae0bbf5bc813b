"""The page in a real browser: Playwright driving the system's Chromium (Debian's ``chromium``
package, never a downloaded one) against a live server on loopback.

The same code makes the README's screenshot and the pictures of docs/page/:
``python tests/serve/test_page.py docs/web.png``.
"""

import json
import math
import sys
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_app import shared_app

from poetry_lm.serve.server import running


@pytest.fixture(scope="module")
def app():
    return shared_app()


CHROMIUM = Path("/usr/bin/chromium")
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
DENGGAO = (
    "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
    "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium (.ci/run does)"
)


@contextmanager
def chromium():
    """The system's Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, base_url, width=900, height=1000):
    """A fresh page at ``base_url``/, recording every URL it asks for in ``page.requests``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(15_000)
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(base_url + "/")
    return page


def settled(page, button):
    """Wait until the request ``button`` sent is answered: the page disables it meanwhile, and
    keeps what is on screen until the answer comes."""
    page.wait_for_function(f"!document.querySelector('{button}').disabled")


def verses_of(page):
    return [v.inner_text() for v in page.query_selector_all(".poem .verse")]


def write_poem(page, start, form):
    """Type a start, choose a form, write: → the verses shown."""
    page.fill("#start", start)
    page.select_option("#form", form)
    page.click("#write-button")
    settled(page, "#write-button")
    page.wait_for_selector(".poem .verse")
    return verses_of(page)


def rewrite_line(page, line):
    """Click verse ``line`` (0-based), take the first candidate: → the verses shown."""
    before = verses_of(page)
    page.click(f".poem .verse[data-line='{line}']")
    page.wait_for_selector(".candidate")
    page.click(".candidate >> nth=0")
    page.wait_for_function(
        "before => [...document.querySelectorAll('.poem .verse')].some((v, i) =>"
        " v.innerText !== before[i])",
        arg=before,
    )
    return verses_of(page)


def check_text(page, text):
    """Paste a poem into the checker: → the result's text."""
    page.fill("#check-text", text)
    page.click("#check-button")
    settled(page, "#check-button")
    page.wait_for_selector("#check-result .verse")
    return page.inner_text("#check-result")


@pytest.fixture(scope="module")
def base_url(app):
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, base_url):
    page = open_page(browser, base_url)
    yield page
    # nothing but this server was asked for: no font, script or style from the internet
    assert page.requests and all(url.startswith(base_url) for url in page.requests)
    page.close()


def test_write_a_qijue_and_rewrite_line_3(page):
    verses = write_poem(page, "月", "七绝")
    assert len(verses) == 4 and verses[0][0] == "月"
    assert all(len(v) == 8 and v[-1] in "，。" for v in verses)  # seven characters and a mark
    tones = page.query_selector_all(".poem .verse >> nth=0 >> .ch")
    assert all(span.get_attribute("title") for span in tones[:7])  # 平 or 仄 on hover
    assert page.query_selector_all(".poem .ch.rhyme")  # the rhymes highlighted
    after = rewrite_line(page, 2)
    assert after[:2] == verses[:2] and after[3] == verses[3]
    assert after[2] != verses[2] and len(after[2]) == 8


def test_the_tones_box_shows_the_default_on_for_a_form_and_is_off_for_a_free_poem(page):
    sent = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/api/generate") else None,
    )
    assert page.is_checked("#tones") and page.is_enabled("#tones")  # 七绝, the page's form
    write_poem(page, "月", "五绝")
    assert sent[-1]["tones"] is True
    page.uncheck("#tones")
    write_poem(page, "月", "五绝")
    assert sent[-1]["tones"] is False
    page.select_option("#form", "")
    assert page.is_disabled("#tones")
    write_poem(page, "月", "")
    assert sent[-1]["tones"] is None and sent[-1]["form"] is None  # the API's default


def test_keywords_typed_on_the_page_are_in_the_poem(page):
    page.fill("#keywords", "春 雨、归")
    verses = write_poem(page, "", "七绝")
    for word in "春雨归":
        assert any(word in verse for verse in verses), verses


def test_checker_passes_denggao_and_names_a_fault(page):
    pasted = DENGGAO.replace("。", "。\n")  # as copied: a couplet a line
    result = check_text(page, pasted)
    assert "七律" in result and "No faults" in result
    assert not page.query_selector_all(".fault")  # neither named nor marked
    result = check_text(page, DENGGAO.replace("鸟飞回", "鸟飞去"))
    faults = [f.inner_text() for f in page.query_selector_all("li.fault")]
    assert len(faults) == 1 and faults[0].startswith("出韵: line 2")
    # and the character at fault is marked in the poem, its fault named on hover
    marked = page.query_selector_all("#check-result .verse >> nth=1 >> .ch.fault")
    assert [m.inner_text() for m in marked] == ["去"] and "出韵" in marked[0].get_attribute("title")
    assert len(page.query_selector_all("#check-result .ch.fault")) == 1
    # a 古体 is judged for 重韵 (柳宗元《江雪》 with 灭 rhymed twice), and not called faultless
    result = check_text(page, "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江灭。")
    faults = [f.inner_text() for f in page.query_selector_all("li.fault")]
    assert "古体" in result and "No faults" not in result
    assert len(faults) == 1 and faults[0].startswith("重韵: line 4")
    marked = page.query_selector_all("#check-result .verse >> nth=3 >> .ch.fault")
    assert [m.inner_text() for m in marked] == ["灭"]


def test_traditional_display_shading_and_a_phone_screen(browser, base_url):
    page = open_page(browser, base_url, width=375, height=800)
    write_poem(page, "风", "五绝")
    page.check("#shade")
    page.click("input[value=traditional]")
    page.wait_for_function("document.querySelector('.poem .verse')?.innerText[0] === '風'")
    assert page.query_selector("#poems.shaded")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing wider than the phone
    page.fill("#count", "2")
    write_poem(page, "风", "七律")
    page.click(".poem .verse[data-line='1']")
    page.wait_for_selector(".candidate")
    check_text(page, DENGGAO)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_an_error_is_shown_beside_the_poem_it_leaves_on_screen(page):
    verses = write_poem(page, "月", "五绝")
    page.fill("#start", "龘")
    page.click("#write-button")
    page.wait_for_function("document.getElementById('error').innerText.length > 0")
    assert "does not know the character" in page.inner_text("#error")
    assert verses_of(page) == verses  # the poem before it is kept
    # beside it: in the write section, just above the poems
    assert page.evaluate("document.getElementById('error').closest('section').id") == "write"
    assert page.evaluate(
        "document.getElementById('error').compareDocumentPosition("
        "document.getElementById('poems')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    page.fill("#start", "月")  # the next answer clears it
    write_poem(page, "月", "五绝")
    assert page.inner_text("#error") == "" and not page.is_visible("#error")
    # a check that fails keeps the result before it too, and says why in its own section
    check_text(page, DENGGAO)
    page.fill("#check-text", "☃")
    page.click("#check-button")
    page.wait_for_function("document.getElementById('check-error').innerText.length > 0")
    assert "No faults" in page.inner_text("#check-result")


def test_traditional_converts_the_whole_page_and_simplified_restores_it(page):
    from poetry_lm.text.corpus import to_traditional

    page.fill("#seed", "5")
    write_poem(page, "月", "五绝")
    check_text(page, JINGYESI)
    simplified = page.inner_text("body")
    assert "床前明月光" in simplified and "作诗" in simplified and "七阳" in simplified
    page.click("input[value=traditional]")
    page.wait_for_function("document.querySelector('#write h2').innerText === 'Write 作詩'")
    settled(page, "input[value=traditional]")
    page.wait_for_function("document.body.innerText.includes('下平聲七陽')")
    shown = page.inner_text("body")
    # labels, headings, the meta lines, rhyme groups, fault messages: nothing left simplified
    assert to_traditional(shown) == shown
    for text in ["開頭", "體裁", "格律檢測", "Check 檢測", "可平可仄", "韻腳", "頭 平 and 明 平"]:
        assert text in shown, text
    # in the standard forms: 床, not s2t's 牀
    assert page.inner_text("#check-result .verse >> nth=0") == "床前明月光"
    assert "牀" not in shown and "舉頭望明月" in shown
    assert page.title() == "poetry_lm · 唐詩"
    assert page.get_attribute("#check-text", "placeholder").startswith("白日依山盡，黃河")
    assert page.get_attribute("html", "lang") == "zh-Hant"
    assert page.input_value("#check-text") == JINGYESI  # what the reader typed is left alone
    page.click("input[value=simplified]")
    page.wait_for_function("document.querySelector('#write h2').innerText === 'Write 作诗'")
    settled(page, "input[value=simplified]")
    page.wait_for_function("text => document.body.innerText === text", arg=simplified)
    assert page.get_attribute("html", "lang") == "zh-Hans"


def test_the_candidates_have_a_label_and_close(page):
    verses = write_poem(page, "月", "七绝")
    page.click(".poem .verse[data-line='2']")
    page.wait_for_selector(".candidate")
    label = page.inner_text(".candidates .label")
    assert label.startswith("Other versions of verse 3")
    labelled = page.evaluate(
        "document.getElementById(document.querySelector('.candidates')"
        ".getAttribute('aria-labelledby')).innerText"
    )
    assert labelled == label
    page.click(".candidates .close")
    assert not page.query_selector_all(".candidate") and not page.is_visible(".candidates")
    assert not page.query_selector_all(".verse.active")
    assert verses_of(page) == verses  # closing takes no candidate


def test_the_head_line_gives_the_perplexity_explained(page):
    with page.expect_response("**/api/generate") as answer:
        write_poem(page, "月", "七绝")
    (poem,) = answer.value.json()["poems"]
    head = page.inner_text(".poem .meta")
    assert "log-probability" not in head
    assert f"perplexity 困惑度 {math.exp(-poem['score']):.1f}" in head
    explained = page.get_attribute(".poem .meta .perplexity", "title")
    assert "per character" in explained and "equally likely" in explained


def generate_requests(page):
    sent = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/api/generate") else None,
    )
    return sent


def test_count_seed_and_again(page):
    sent = generate_requests(page)
    assert page.get_attribute("#count", "min") == "1" and page.get_attribute("#count", "max") == "8"
    page.fill("#count", "3")
    page.fill("#seed", "42")
    verses = write_poem(page, "月", "五绝")
    assert sent[-1]["n"] == 3 and sent[-1]["seed"] == 42
    assert len(page.query_selector_all(".poem")) == 3 and len(verses) == 12
    assert "3 poems · seed 种子 42" in page.inner_text("#written")
    assert write_poem(page, "月", "五绝") == verses  # the same seed, the same poems
    # blank: the server draws a seed, and the page shows it; typed back, it writes the same
    page.fill("#seed", "")
    drawn = write_poem(page, "月", "五绝")
    assert sent[-1]["seed"] is None
    seed = int(page.inner_text("#written").split("seed 种子 ")[1].split()[0])
    page.fill("#seed", str(seed))
    assert write_poem(page, "月", "五绝") == drawn
    # again: the same options, a new seed
    page.click("#again-button")
    settled(page, "#write-button")
    page.wait_for_function(
        "seed => !document.getElementById('written').innerText.includes('seed 种子 ' + seed)",
        arg=seed,
    )
    assert sent[-1]["seed"] is None and sent[-1]["n"] == 3 and page.input_value("#seed") == ""
    assert len(page.query_selector_all(".poem")) == 3 and verses_of(page) != drawn
    # more than 8 is refused by the form before anything is sent
    asked = len(sent)
    page.fill("#count", "9")
    page.click("#write-button")
    assert not page.evaluate("document.getElementById('count').validity.valid")
    assert len(sent) == asked


def test_a_vertical_view_reads_right_to_left(browser, base_url):
    page = open_page(browser, base_url, width=375, height=800)
    verses = write_poem(page, "月", "五律")
    page.check("#vertical")
    mode = "getComputedStyle(document.querySelector('.poem .verses')).writingMode"
    assert page.evaluate(mode) == "vertical-rl"
    boxes = [v.bounding_box() for v in page.query_selector_all(".poem .verse")]
    assert all(a["x"] > b["x"] for a, b in zip(boxes, boxes[1:]))  # the first on the right
    for verse in page.query_selector_all(".poem .verse"):  # each verse one column, downwards
        chars = [c.bounding_box() for c in verse.query_selector_all(".ch")]
        assert len({round(c["x"]) for c in chars}) == 1
        assert all(a["y"] < b["y"] for a, b in zip(chars, chars[1:]))
    assert verses_of(page) == verses
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.uncheck("#vertical")
    assert page.evaluate(mode) == "horizontal-tb"
    page.close()


def test_save_as_image_downloads_an_svg_card_of_the_poem(page):
    page.fill("#title", "静夜")
    verses = write_poem(page, "月", "五绝")
    with page.expect_download() as download:
        page.click(".poem .save-image")
    assert download.value.suggested_filename == "静夜.svg"
    svg = ET.parse(download.value.path()).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.tag == ns + "svg" and float(svg.get("width")) > 0
    texts = {t.get("class"): [] for t in svg.iter(ns + "text")}
    for t in svg.iter(ns + "text"):
        texts[t.get("class")].append(t.text)
    assert texts["title"] == ["静夜"] and texts["verse"] == verses
    assert texts["note"] == ["五绝 · poetry_lm"]


def test_a_link_writes_the_same_poems(page, browser):
    page.fill("#count", "2")
    page.fill("#keywords", "春")
    verses = write_poem(page, "月", "五绝")
    link = page.eval_on_selector("#link", "a => a.href")
    assert page.url == link  # the address bar holds it too
    seed = page.inner_text("#written").split("seed 种子 ")[1].split()[0]
    other = browser.new_page()
    other.set_default_timeout(15_000)
    other.goto(link)
    other.wait_for_selector(".poem .verse")
    settled(other, "#write-button")
    assert verses_of(other) == verses
    assert other.input_value("#start") == "月" and other.input_value("#form") == "五绝"
    assert other.input_value("#count") == "2" and other.input_value("#keywords") == "春"
    assert other.input_value("#seed") == seed
    other.close()


@pytest.mark.parametrize(
    "query, named",
    [
        ("n=0", 'n "0"'),
        ("n=50", 'n "50"'),
        ("form=八绝", 'form "八绝"'),
        ("seed=abc", 'seed "abc"'),
    ],
)
def test_a_link_with_a_value_the_form_cannot_take_says_so_and_writes_nothing(
    browser, base_url, query, named
):
    page = open_page(browser, base_url)
    seed = "" if query.startswith("seed=") else "seed=1&"
    page.goto(f"{base_url}/?start=月&{seed}{query}")
    page.wait_for_function("document.getElementById('error').innerText.length > 0")
    assert f"this link's {named} cannot be used" in page.inner_text("#error")
    assert page.locator(".poem .verse").count() == 0
    assert not any("/api/generate" in url for url in page.requests)
    page.close()


def test_the_title_goes_with_the_request_where_the_model_reads_titles(
    page, browser, tiny_theme_run, no_title_model
):
    from poetry_lm.serve.app import create_app

    # the shipped model reads titles: its title field is on
    page.wait_for_selector("#title")
    assert not page.is_disabled("#title")

    app = create_app(tiny_theme_run / "best.pt")
    with running(app) as url:
        themed = open_page(browser, url)
        sent = []
        themed.on("request", lambda r: sent.append(r) if r.url.endswith("/api/generate") else None)
        themed.fill("#title", "春望")
        verses = write_poem(themed, "春", "五绝")
        assert json.loads(sent[-1].post_data)["title"] == "春望" and verses[0][0] == "春"
        assert not themed.is_disabled("#title")
        themed.close()
    app.state.batcher.close()
    old = create_app(no_title_model)  # a model from before titles: the field is switched off
    with running(old) as url:
        untitled = open_page(browser, url)
        untitled.wait_for_function("document.getElementById('title').disabled")
        untitled.close()
    old.state.batcher.close()


# ReDoc's one request beyond the server: the sidebar's "API docs by Redocly" logo, an image
# ReDoc hides when it does not load
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize("path, shown", [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_the_api_docs_render_with_the_internet_blocked(browser, base_url, path, shown):
    """/docs (Swagger UI) and /redoc with every request beyond this server refused: each
    draws the API's operations from what the package serves."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    refused = []

    def only_this_server(route):
        if route.request.url.startswith(base_url):
            return route.continue_()
        refused.append(route.request.url)
        return route.abort()

    page.route("**/*", only_this_server)
    page.goto(base_url + path)
    page.wait_for_selector(shown)
    page.get_by_text("/api/generate").first.wait_for(state="visible")
    assert set(refused) <= {REDOC_LOGO}, refused
    page.close()


def page_pictures(page, folder):
    """docs/page/: each feature of the page, from a page showing a seeded 七绝 and its
    candidates (write.png), then an error beside it (error.png), a fault marked (fault.png),
    the card saved as an image (card.png), and a phone's screen in 繁體 and 竖排 (phone.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    page.locator("#write").screenshot(path=folder / "write.png")
    page.fill("#start", "龘")
    page.click("#write-button")
    page.wait_for_function("document.getElementById('error').innerText.length > 0")
    page.locator("#write").screenshot(path=folder / "error.png")
    check_text(page, DENGGAO.replace("鸟飞回", "鸟飞去"))
    page.locator("#check").screenshot(path=folder / "fault.png")
    with page.expect_download() as download:
        page.click(".poem .save-image")
    svg = Path(download.value.path()).read_text(encoding="utf-8").split("\n", 1)[1]
    page.set_content(f"<body style='margin:0'>{svg}</body>")
    page.locator("svg").screenshot(path=folder / "card.png")


def screenshot(path):
    """The README's picture (a 七绝, a rewritten verse offered, 《登高》 checked) and the
    pictures of docs/page/ beside it (page_pictures)."""
    from poetry_lm.serve.app import create_app

    app = create_app()
    with running(app) as url, chromium() as browser:
        page = open_page(browser, url, width=760, height=900)
        page.fill("#title", "秋月")
        page.fill("#seed", "3")
        write_poem(page, "月", "七绝")
        page.click(".poem .verse[data-line='2']")
        page.wait_for_selector(".candidate")
        check_text(page, DENGGAO)
        page.screenshot(path=path, full_page=True)
        folder = Path(path).parent / "page"
        page_pictures(page, folder)
        phone = open_page(browser, url, width=375, height=640)
        phone.fill("#seed", "3")
        write_poem(phone, "风", "五律")
        phone.check("#vertical")
        phone.click("input[value=traditional]")
        phone.wait_for_function("document.querySelector('#write h2').innerText === 'Write 作詩'")
        settled(phone, "input[value=traditional]")
        phone.locator("#write").screenshot(path=folder / "phone.png")
    app.state.batcher.close()


if __name__ == "__main__":
    screenshot(sys.argv[1] if len(sys.argv) > 1 else "docs/web.png")
