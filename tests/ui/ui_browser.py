"""Helpers for the UI's browser test: start Debian's Chromium through Playwright, and check what a
person sees — that text in a script is drawn with real glyphs from an installed font, not tofu.

Two independent checks, both in the real browser:
- ``platform_fonts``: Chromium's DevTools protocol reports, for a DOM node, which installed fonts
  drew how many of its glyphs (``CSS.getPlatformFontsForNode``);
- ``renders_like_tofu``: a canvas draws the sample and a string of unassigned code points (which
  can only be drawn as .notdef boxes) and compares the pixels.

``log_in`` gets past the key check in front of the server's UI.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Draws `sample` and tofu (unassigned code points, one per sample character) on a canvas with the
# page's own font stack; returns how the two differ. A script without a font draws boxes that look
# exactly like the tofu row; one with a font differs in width and pixels.
_CANVAS_JS = """
([sample, font]) => {
  const draw = (text) => {
    const c = document.createElement('canvas'); c.width = 1600; c.height = 80;
    const g = c.getContext('2d'); g.font = font; g.fillStyle = '#000'; g.fillText(text, 4, 50);
    return {width: g.measureText(text).width, pixels: Array.from(g.getImageData(0, 0, 1600, 80).data)};
  };
  const chars = Array.from(sample);
  const tofu = chars.map(ch => /\\s/.test(ch) ? ch : '\\u0378').join('');
  const a = draw(sample), b = draw(tofu);
  let diff = 0;
  for (let i = 3; i < a.pixels.length; i += 4) if (a.pixels[i] !== b.pixels[i]) diff++;
  return {sampleWidth: a.width, tofuWidth: b.width, differingPixels: diff};
}
"""


def launch_chromium(playwright, viewport=(1280, 900)):
    """A persistent context on a fresh, throw-away user-data-dir (removed by ``close_chromium``)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: run scripts/install_browser.sh")
    profile = tempfile.mkdtemp(prefix="crossling-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,  # Playwright passes the fresh profile as --user-data-dir itself
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    context._crossling_profile = profile  # type: ignore[attr-defined]
    return context


def close_chromium(context) -> None:
    profile = getattr(context, "_crossling_profile", None)
    context.close()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


def platform_fonts(page, selector: str) -> dict[str, int]:
    """``{font family: glyph count}`` Chromium used to draw the text of the first node matching."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise AssertionError(f"no node matches {selector!r}")
        fonts: dict[str, int] = {}
        # The text sits in descendants (p, span...): collect fonts from every element below the node.
        nodes = [node] + cdp.send("DOM.querySelectorAll", {"nodeId": node, "selector": "*"})["nodeIds"]
        for n in nodes:
            for f in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": n})["fonts"]:
                fonts[f["familyName"]] = fonts.get(f["familyName"], 0) + int(f["glyphCount"])
        return fonts
    finally:
        cdp.detach()


def tofu_check(page, sample: str, selector: str = "body") -> dict:
    """Canvas comparison of ``sample`` against tofu, in the font the element ``selector`` uses."""
    font = page.evaluate(
        "(sel) => { const s = getComputedStyle(document.querySelector(sel)); return `24px ${s.fontFamily}`; }",
        selector,
    )
    return page.evaluate(_CANVAS_JS, [sample, font])


def log_in(page, key: str) -> None:
    """The server's UI asks for an API key first (``serve.ui.login``): type it and submit."""
    page.wait_for_selector("#crossling-login-key")
    page.fill("#crossling-login-key", key)
    page.click("#crossling-login-submit")
