"""The page in a real browser: Playwright driving the system's Chromium (Debian's ``chromium``
package, never a downloaded one) against a live server on loopback.

The same code makes the README's screenshot: ``python tests/serve/test_page.py docs/web.png``.
"""

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_app import shared_app

from poetry_lm.serve.app import running


@pytest.fixture(scope="module")
def app():
    return shared_app()


CHROMIUM = Path("/usr/bin/chromium")
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


def write_poem(page, start, form):
    """Type a start, choose a form, write: → the verses shown."""
    page.fill("#start", start)
    page.select_option("#form", form)
    page.click("#write-button")
    page.wait_for_selector(".poem .verse")
    return [v.inner_text() for v in page.query_selector_all(".poem .verse")]


def rewrite_line(page, line):
    """Click verse ``line`` (0-based), take the first candidate: → the verses shown."""
    before = [v.inner_text() for v in page.query_selector_all(".poem .verse")]
    page.click(f".poem .verse[data-line='{line}']")
    page.wait_for_selector(".candidate")
    page.click(".candidate >> nth=0")
    page.wait_for_function(
        "before => [...document.querySelectorAll('.poem .verse')].some((v, i) =>"
        " v.innerText !== before[i])",
        arg=before,
    )
    return [v.inner_text() for v in page.query_selector_all(".poem .verse")]


def check_text(page, text):
    """Paste a poem into the checker: → the result's text."""
    page.fill("#check-text", text)
    page.click("#check-button")
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
    assert not page.query_selector_all(".fault")
    result = check_text(page, DENGGAO.replace("鸟飞回", "鸟飞去"))
    faults = [f.inner_text() for f in page.query_selector_all(".fault")]
    assert len(faults) == 1 and faults[0].startswith("出韵: line 2")
    # a 古体 is judged for 重韵 (柳宗元《江雪》 with 灭 rhymed twice), and not called faultless
    result = check_text(page, "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江灭。")
    faults = [f.inner_text() for f in page.query_selector_all(".fault")]
    assert "古体" in result and "No faults" not in result
    assert len(faults) == 1 and faults[0].startswith("重韵: line 4")


def test_traditional_display_shading_and_a_phone_screen(browser, base_url):
    page = open_page(browser, base_url, width=375, height=800)
    write_poem(page, "风", "五绝")
    page.check("#shade")
    page.click("input[value=traditional]")
    page.wait_for_function("document.querySelector('.poem .verse')?.innerText[0] === '風'")
    assert page.query_selector("#poems.shaded")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing wider than the phone


def test_an_error_is_shown_not_thrown(page):
    page.fill("#start", "龘")
    page.click("#write-button")
    page.wait_for_function("document.getElementById('error').innerText.length > 0")
    assert "does not know the character" in page.inner_text("#error")


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


def screenshot(path):
    """The README's picture: a 七绝, a rewritten verse offered, and 《登高》 checked."""
    from poetry_lm.serve.app import create_app

    app = create_app()
    with running(app) as url, chromium() as browser:
        page = open_page(browser, url, width=760, height=900)
        write_poem(page, "月", "七绝")
        page.click(".poem .verse[data-line='2']")
        page.wait_for_selector(".candidate")
        check_text(page, DENGGAO)
        page.screenshot(path=path, full_page=True)
    app.state.batcher.close()


if __name__ == "__main__":
    screenshot(sys.argv[1] if len(sys.argv) > 1 else "docs/web.png")
