"""Language identification, shared by the data quality gates, the eval's language fidelity and the
safety filter.

lingua (offline, n-gram models, good on short texts) decides among the languages crossling knows
that it covers; Amharic (Ethiopic script), which lingua lacks, is decided by script, and so are
scripts used by one language only among ours. Javanese, Hausa: lingua has no model for them; a text
in them is reported as ``None`` (unknown) rather than mislabelled, unless ``candidates`` narrows the
choice. This module is not the safety filter's script detector alone: it answers "which language".
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

from crossling.languages import LANGUAGES

# our code -> lingua Language name
_LINGUA_NAMES = {
    "en": "ENGLISH", "de": "GERMAN", "fr": "FRENCH", "es": "SPANISH", "it": "ITALIAN",
    "pt": "PORTUGUESE", "nl": "DUTCH", "ru": "RUSSIAN", "zh": "CHINESE", "ja": "JAPANESE",
    "pl": "POLISH", "uk": "UKRAINIAN", "tr": "TURKISH", "ko": "KOREAN", "ar": "ARABIC",
    "vi": "VIETNAMESE", "id": "INDONESIAN", "th": "THAI", "hi": "HINDI", "bn": "BENGALI",
    "te": "TELUGU", "sw": "SWAHILI", "yo": "YORUBA",
}  # fmt: skip

# Unicode script (first word of the character name) -> our language, where only one of ours uses it.
_SCRIPT_LANG = {
    "ETHIOPIC": "am", "BENGALI": "bn", "TELUGU": "te", "THAI": "th", "HANGUL": "ko",
    "HIRAGANA": "ja", "KATAKANA": "ja", "DEVANAGARI": "hi", "ARABIC": "ar",
}  # fmt: skip


def script_of(ch: str) -> str | None:
    """Coarse script of one character from its Unicode name (``LATIN``, ``CYRILLIC``, ``CJK``...)."""
    if not ch.isalpha():
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    return name.split(" ")[0]


def dominant_script(text: str) -> str | None:
    counts = Counter(s for s in map(script_of, text) if s)
    return counts.most_common(1)[0][0] if counts else None


@lru_cache(maxsize=1)
def _detector():
    from lingua import Language, LanguageDetectorBuilder

    langs = [getattr(Language, name) for name in _LINGUA_NAMES.values()]
    # lingua loads each language model on first use: preloading all of them costs ~10-30 s at start-up.
    return LanguageDetectorBuilder.from_languages(*langs).build()


@lru_cache(maxsize=1)
def _lingua_to_code():
    from lingua import Language

    return {getattr(Language, name): code for code, name in _LINGUA_NAMES.items()}


def detect(text: str, candidates: tuple[str, ...] | None = None) -> str | None:
    """The language code of ``text`` (``None`` when there are no letters or lingua cannot tell).

    Kana anywhere means Japanese (Japanese text mixes kana and kanji); a script that only one of our
    languages uses decides by itself; everything else goes to lingua.
    """
    counts = Counter(s for s in map(script_of, text) if s)
    if not counts:
        return None
    if counts.get("HIRAGANA", 0) + counts.get("KATAKANA", 0) > 0:
        return "ja"
    script = counts.most_common(1)[0][0]
    if script in _SCRIPT_LANG and script != "ARABIC":
        return _SCRIPT_LANG[script]
    if script == "CJK":
        return "zh"
    code = _lingua_to_code().get(_detector().detect_language_of(text))
    if candidates and code not in candidates:
        confidences = _detector().compute_language_confidence_values(text)
        for c in confidences:
            cand = _lingua_to_code().get(c.language)
            if cand in candidates:
                return cand
    return code


def is_language(text: str, lang: str, min_letters: int = 3) -> bool:
    """True if ``text`` reads as ``lang`` (languages lingua cannot identify pass if their script fits)."""
    if sum(ch.isalpha() for ch in text) < min_letters:
        return True  # numbers, code or a word or two: nothing to judge
    if lang not in _LINGUA_NAMES and lang not in _SCRIPT_LANG.values():
        # jv, ha: no model; accept Latin-script text that lingua does not confidently call English
        return dominant_script(text) == "LATIN" and detect(text) != "en"
    return detect(text) == lang


def in_language(text: str, lang: str) -> bool:
    """Language fidelity of an answer: True if it is written in ``lang``. Empty answers fail (where
    :func:`is_language` lets a text with too few letters to judge pass)."""
    return bool(text and text.strip()) and is_language(text, lang)


def supported(lang: str) -> bool:
    return lang in LANGUAGES and (lang in _LINGUA_NAMES or lang in _SCRIPT_LANG.values())
