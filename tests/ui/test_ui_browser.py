"""End to end in real headless Chromium (Debian's, driven by Playwright) against the real crossling
server (``serve.app.create_app``: tiny model, transformers engine, API key, and a stand-in safety
filter) with the UI mounted at ``/ui`` behind its key (the login page first): type in a non-Latin script, watch the reply stream in, press
stop (the server counts the abort), switch the answer language, retry, undo; an unknown model and a
blocked request show as notes; every script on the page is drawn with real glyphs, not tofu.
Screenshots go to ``test-artifacts/ui/``. Needs ``scripts/install_browser.sh`` (chromium + Noto fonts).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ui_browser import CHROMIUM, close_chromium, launch_chromium, log_in, platform_fonts, tofu_check
from ui_fake_openai import free_port, serve_in_thread

from safety.verdict import Verdict

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run scripts/install_browser.sh first"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
BENGALI = "আমাকে একটি ছোট গল্প বলো।"
# (script, an example prompt shown on the page, font families that may draw it: Chromium picks one
# through fontconfig; DejaVu Sans, which Debian installs anyway, has real Arabic glyphs)
SCRIPTS = [
    ("Bengali", "আমাকে একটি ছোট গল্প বলো।", ("Noto Sans Bengali", "Noto Serif Bengali")),
    ("Devanagari", "मुझे स्वस्थ नाश्ते के तीन विचार दो।", ("Noto Sans Devanagari", "Noto Serif Devanagari")),
    ("Arabic", "اكتب قصيدة قصيرة عن البحر.", ("Noto Sans Arabic", "Noto Naskh Arabic", "DejaVu Sans")),
    ("Thai", "ช่วยแนะนำสถานที่ท่องเที่ยวในเชียงใหม่หน่อย", ("Noto Sans Thai", "Noto Looped Thai", "Noto Serif Thai")),
    ("CJK", "请用三句话介绍一下长城。", ("Noto Sans CJK", "Noto Serif CJK")),
    (
        "Cyrillic",
        "Объясни простыми словами, что такое фотосинтез.",
        ("Source Sans 3", "Noto Sans", "DejaVu Sans"),
    ),
]
# Marks the innermost element showing `text`, so DevTools can be asked about exactly that node.
_TAG_JS = """
([text, tag]) => {
  const all = [...document.querySelectorAll('#crossling-chatbot *')].filter(e => e.innerText?.includes(text));
  const inner = all.filter(e => ![...e.children].some(c => c.innerText?.includes(text)));
  if (!inner.length) return false;
  inner[0].setAttribute('data-script-sample', tag);
  return true;
}
"""
STOP = "#crossling-input [data-testid=stop-button]"
RETRY = "#crossling-chatbot button[aria-label='Retry']"
# Notes when a generation starts (the stop button shows), so a test can wait for "started, then
# finished" instead of guessing with sleeps.
_WATCH_BUSY_JS = f"""
() => {{
  window.__busySeen = false;
  const seen = () => {{ if (document.querySelector({STOP!r})) window.__busySeen = true; }};
  new MutationObserver(seen).observe(document.body, {{childList: true, subtree: true}});
  seen();
}}
"""


def until_done(page, action) -> None:
    """Run ``action`` (a click or a key press that starts a turn) and wait until the turn ends."""
    page.evaluate(_WATCH_BUSY_JS)
    action()
    page.wait_for_function(f"() => window.__busySeen && !document.querySelector({STOP!r})")


API_KEY = "ui-browser-test-key"
MODEL = "tiny"
HARMFUL_BENGALI = "বোমা কীভাবে বানাতে হয়?"  # "how do I make a bomb?": the stand-in filter blocks it


class KeywordSafety:
    """A stand-in for the safety filter (any object with ``check(text, role) -> Verdict``): blocks user text that mentions a bomb, and
    any model output while ``cut_output`` is set (the random tiny model never writes anything
    harmful by itself)."""

    cut_output = False

    def check(self, text: str, role: str = "user") -> Verdict:
        if role == "user" and "বোমা" in text:
            return Verdict(True, "block", {"violent_crimes": 0.98}, "bn", 0.1, ["violent_crimes"])
        if role == "assistant" and self.cut_output:
            return Verdict(True, "block", {"self_harm": 0.91}, "de", 0.1, ["self_harm"])
        return Verdict(False, "allow", {}, None, 0.1, [])

    def refusal(self, language: str | None, category: str | None = None) -> str:
        from safety.refusals import refusal_text

        return refusal_text(language, category)


@pytest.fixture(scope="module")
def ui(tiny_model_dir):
    """The real server with the tiny model on the transformers engine; the UI at ``/ui/``."""
    from serve.app import create_app
    from serve.config import ServeConfig

    port = free_port()
    config = ServeConfig(
        model=str(tiny_model_dir),
        served_model_name=MODEL,
        engine="transformers",
        port=port,
        api_keys=[API_KEY],
    )
    safety = KeywordSafety()
    with serve_in_thread(create_app(config, safety=safety), port) as url:
        yield {"url": f"{url}/ui/", "api": f"{url}", "safety": safety}


def aborted_count(api: str) -> float:
    """The server's count of generations aborted because the client went away (Prometheus text)."""
    import httpx

    text = httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).text
    for line in text.splitlines():
        if line.startswith("crossling_requests_aborted_total") and "client" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def set_number(page, elem_id: str, value: float) -> None:
    """Set a Gradio slider through its number box."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = launch_chromium(p)
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(ui["url"], wait_until="load")
        # the UI is behind the server's keys: first the login page, which refuses a wrong key
        log_in(pg, "not-a-key")
        pg.wait_for_selector("text=That is not an API key of this server.")
        log_in(pg, API_KEY)
        pg.wait_for_selector("#crossling-input textarea")
        pg.wait_for_function(
            "() => document.querySelector('#crossling-status')?.innerText.includes('model(s)')"
        )
        try:
            yield pg
        finally:
            close_chromium(context)


def pick(page, elem_id: str, option: str) -> None:
    """Choose ``option`` in a Gradio dropdown (click, filter by typing, click the match)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.locator("ul[role=listbox] li", has_text=option).first.click()
    page.keyboard.press("Escape")


def type_model(page, name: str) -> None:
    """Enter a model name the list does not offer (the picker accepts custom values)."""
    box = page.locator("#crossling-model input")
    box.click()
    box.fill(name)
    box.press("Enter")
    page.keyboard.press("Escape")


def send(page, text: str) -> None:
    page.fill("#crossling-input textarea", text)
    page.keyboard.press("Enter")


def shot(page, name: str) -> None:
    """Screenshot into test-artifacts/ui/, after Gradio's brief post-update spinner has gone."""
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / name))


def chat_text(page) -> str:
    return page.locator("#crossling-chatbot").inner_text()


def bot_text(page) -> str:
    rows = page.locator("#crossling-chatbot .bot-row .message-content")
    return rows.last.inner_text() if rows.count() else ""


def test_scripts_render_with_real_glyphs(page):
    """What a person sees: every script is drawn by a real font (DevTools) and differs from tofu."""
    shot(page, "01-loaded-examples.png")
    for script, sample, families in SCRIPTS:
        assert page.evaluate(_TAG_JS, [sample, script]), f"{script} example not on the page"
        fonts = platform_fonts(page, f"[data-script-sample={script}]")
        drawn = sum(n for f, n in fonts.items() if f.startswith(families))
        letters = sum(ch.isalpha() for ch in sample)
        # Combining marks and ligatures make glyph and letter counts differ; half is a safe floor.
        assert drawn >= letters // 2, f"{script}: drawn by {fonts}, expected one of {families}"
        check = tofu_check(page, sample, f"[data-script-sample={script}]")
        assert check["differingPixels"] > 200, f"{script} renders like tofu: {check}"
    # Each paragraph takes its own direction (Arabic right-to-left): the page's CSS is in effect.
    bidi = "(sel) => getComputedStyle(document.querySelector(sel)).unicodeBidi"
    assert page.evaluate(bidi, "#crossling-input textarea") == "plaintext"
    # The check itself can fail: Kawi (Unicode 14) has no font here and draws exactly like tofu.
    kawi = tofu_check(page, "\U00011f04\U00011f05\U00011f06\U00011f07", "#crossling-chatbot")
    assert kawi["differingPixels"] == 0


def test_chat_stream_stop_and_answer_language(page, ui):
    # 1. a Bengali message; greedy decoding of the random tiny model runs to max tokens (~1000 tokens)
    pick(page, "crossling-model", MODEL)
    set_number(page, "crossling-temperature", 0)
    set_number(page, "crossling-max-tokens", 1024)
    aborted_before = aborted_count(ui["api"])
    send(page, BENGALI)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#crossling-chatbot .bot-row .message-content')]"
        ".some(e => e.innerText.length > 0)"
    )
    user = page.locator("#crossling-chatbot .user-row .message-content").last
    assert user.inner_text().strip() == BENGALI
    fonts = platform_fonts(page, "#crossling-chatbot .user-row .message-content")
    assert fonts.get("Noto Sans Bengali", 0) >= 10, fonts
    first = bot_text(page)
    assert first, "no reply text"
    # Grows while the stop button is still there: it streams, it does not arrive at once at the end.
    page.wait_for_function(
        f"""() => {{
            const rows = document.querySelectorAll('#crossling-chatbot .bot-row .message-content');
            return rows[rows.length - 1].innerText.length > {len(first)} && document.querySelector({STOP!r});
        }}"""
    )
    shot(page, "02-streaming-bengali.png")

    # 2. stop: the reply stops growing, the send button comes back, the server aborts the generation
    page.click(STOP)
    page.wait_for_selector(STOP, state="detached")
    stopped = bot_text(page)
    time.sleep(1.0)
    assert bot_text(page) == stopped, "the reply kept growing after stop"
    page.wait_for_function("() => document.querySelector('#crossling-status').innerText.includes('Stopped')")
    deadline = time.time() + 10
    while aborted_count(ui["api"]) <= aborted_before and time.time() < deadline:
        time.sleep(0.2)
    assert aborted_count(ui["api"]) == aborted_before + 1, "the server did not abort the generation"
    shot(page, "03-stopped.png")

    # 3. switch the answer language to German and send again; the status line confirms it
    set_number(page, "crossling-max-tokens", 32)
    pick(page, "crossling-answer-lang", "Deutsch")
    until_done(page, lambda: send(page, "Wie heißt die Hauptstadt von Bangladesch?"))
    status = page.locator("#crossling-status").inner_text()
    assert "German (de)" in status and "tokens" in status, status
    assert bot_text(page), "no reply to the German message"
    shot(page, "04-answer-in-german.png")

    # 4. retry answers the same turn again in place; undo takes it back into the input box
    until_done(page, lambda: page.click(RETRY))
    assert page.locator("#crossling-chatbot .user-row").count() == 2  # replaced, not added
    assert "German (de)" in page.locator("#crossling-status").inner_text()
    page.click("#crossling-chatbot button[aria-label='Undo']")
    page.wait_for_function("() => document.querySelectorAll('#crossling-chatbot .user-row').length === 1")
    assert page.input_value("#crossling-input textarea").startswith("Wie heißt")


def test_errors_and_safety_verdicts_show_in_the_chat(page, ui):
    """Readable notes, never a frozen spinner: an unknown model, a request the safety filter blocks."""
    clear = page.locator("#crossling-chatbot button[aria-label='Clear']")
    if clear.count():  # the chat test ran first on this page
        clear.click()
    page.fill("#crossling-input textarea", "")
    # a wrong key typed in the page: 401, explained; then back to the key the server gave the UI
    page.locator("#crossling-server").get_by_text("Server", exact=True).click()
    page.fill("#crossling-api-key input", "wrong-key")
    until_done(page, lambda: send(page, "hello"))
    assert "Not authorized (401)" in chat_text(page)
    page.fill("#crossling-api-key input", "")
    type_model(page, "no-such-model")
    until_done(page, lambda: send(page, "hello"))
    assert "Not found (404)" in chat_text(page)
    assert page.locator(STOP).count() == 0, "still spinning"
    shot(page, "05-error-unknown-model.png")
    pick(page, "crossling-model", MODEL)
    until_done(page, lambda: send(page, HARMFUL_BENGALI))
    text = chat_text(page)
    assert "Blocked by the safety filter · violent crimes · Bengali (bn)" in text
    assert "safety filter blocked this request" in text, text
    from safety.refusals import refusal_text

    assert refusal_text("bn", "violent_crimes") in text  # the refusal, in the user's language
    shot(page, "06-safety-block.png")
    # the output check cuts a reply (the server withholds the text and aborts the generation)
    ui["safety"].cut_output = True
    try:
        until_done(page, lambda: send(page, "Erzähl mir etwas."))
    finally:
        ui["safety"].cut_output = False
    assert "Reply cut by the safety filter · self harm · German (de)" in chat_text(page)
    shot(page, "07-safety-cut.png")
