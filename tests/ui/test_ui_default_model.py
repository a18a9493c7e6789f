"""``crossling serve`` (what ``make serve`` runs) on the real default model, the UI opened at the URL
the server prints, one Bengali question answered in a real browser. Slow: it loads Gemma 3 270M."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ui_browser import CHROMIUM, close_chromium, launch_chromium, log_in, platform_fonts
from ui_fake_openai import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run scripts/install_browser.sh first"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
QUESTION = "বাংলাদেশের রাজধানীর নাম কী?"  # "What is the capital of Bangladesh?"
KEY = "ui-default-model-key"


@pytest.fixture(scope="module")
def served(default_model_dir):
    """``crossling serve configs/serve/transformers.yaml`` on a free port; yields the printed UI URL."""
    port = free_port()
    env = dict(os.environ, CROSSLING_API_KEYS=KEY)
    cmd = [sys.executable, "-m", "crossling", "serve", "configs/serve/transformers.yaml", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        ui_url = None
        deadline = time.time() + 240
        while ui_url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail("crossling serve exited:\n" + "".join(lines[-30:]))
            lines.append(line)
            if match := re.search(r"UI:\s+(\S+)", line):
                ui_url = match.group(1)
            assert time.time() < deadline, "no UI URL printed:\n" + "".join(lines[-30:])
        while True:  # the URLs are printed before the model has loaded
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and proc.poll() is None, "server not healthy"
            time.sleep(0.5)
        yield ui_url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_default_model_answers_in_the_browser(served):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = launch_chromium(p)
        try:
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(served, wait_until="load")
            log_in(page, KEY)
            page.wait_for_function(
                "() => document.querySelector('#crossling-status')?.innerText.includes('model(s)')"
            )
            assert page.input_value("#crossling-model input") == "gemma3-270m"
            max_tokens = page.locator("#crossling-max-tokens input[type=number]")
            max_tokens.fill("48")
            max_tokens.press("Enter")
            page.fill("#crossling-input textarea", QUESTION)
            page.keyboard.press("Enter")
            stop = "#crossling-input [data-testid=stop-button]"
            page.wait_for_selector(stop)
            page.wait_for_selector(stop, state="detached")
            reply = page.locator("#crossling-chatbot .bot-row .message-content").last.inner_text()
            status = page.locator("#crossling-status").inner_text()
            page.screenshot(path=str(ARTIFACTS / "08-default-model-bengali.png"))
            assert reply.strip(), "the default model gave no reply"
            assert "gemma3-270m" in status and "Bengali (bn)" in status, status
            fonts = platform_fonts(page, "#crossling-chatbot .user-row .message-content")
            assert fonts.get("Noto Sans Bengali", 0) >= 10, fonts
        finally:
            close_chromium(context)
