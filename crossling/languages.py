"""The one table of languages crossling knows.

Everything in crossling speaks short BCP-47 codes (``en``, ``de``, ``zh``, ``sw``, ...). Corpus
codes (NTREX's ``deu``, ``zho-CN``; MultiJail's column names) are mapped here and nowhere else.
This module is data and lookups only: no language identification (see ``crossling.langid``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # BCP-47 short code, the key used everywhere
    name: str  # English name
    native: str  # the language's own name for itself (used in prompts written in that language)
    script: str  # ISO 15924 script
    resource: str  # "high" | "medium" | "low" (MultiJail/Joshi et al. style grouping)
    ntrex: str | None = None  # NTREX-128 file code, when the corpus has it


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "English", "English", "Latn", "high", "eng"),
        Language("de", "German", "Deutsch", "Latn", "high", "deu"),
        Language("fr", "French", "français", "Latn", "high", "fra"),
        Language("es", "Spanish", "español", "Latn", "high", "spa"),
        Language("it", "Italian", "italiano", "Latn", "high", "ita"),
        Language("pt", "Portuguese", "português", "Latn", "high", "por"),
        Language("nl", "Dutch", "Nederlands", "Latn", "high", "nld"),
        Language("ru", "Russian", "русский", "Cyrl", "high", "rus"),
        Language("zh", "Chinese", "中文", "Hans", "high", "zho-CN"),
        Language("ja", "Japanese", "日本語", "Jpan", "high", "jpn"),
        Language("pl", "Polish", "polski", "Latn", "medium", "pol"),
        Language("uk", "Ukrainian", "українська", "Cyrl", "medium", "ukr"),
        Language("tr", "Turkish", "Türkçe", "Latn", "medium", "tur"),
        Language("ko", "Korean", "한국어", "Kore", "medium", "kor"),
        Language("ar", "Arabic", "العربية", "Arab", "medium", "arb"),
        Language("vi", "Vietnamese", "Tiếng Việt", "Latn", "medium", "vie"),
        Language("id", "Indonesian", "Bahasa Indonesia", "Latn", "medium", "ind"),
        Language("th", "Thai", "ไทย", "Thai", "medium", "tha"),
        Language("hi", "Hindi", "हिन्दी", "Deva", "medium", "hin"),
        Language("bn", "Bengali", "বাংলা", "Beng", "low", "ben"),
        Language("te", "Telugu", "తెలుగు", "Telu", "low", "tel"),
        Language("sw", "Swahili", "Kiswahili", "Latn", "low", "swa"),
        Language("jv", "Javanese", "Basa Jawa", "Latn", "low"),
        Language("yo", "Yoruba", "Yorùbá", "Latn", "low"),
        Language("ha", "Hausa", "Hausa", "Latn", "low"),
        Language("am", "Amharic", "አማርኛ", "Ethi", "low"),
    ]
}

# The ten languages the default demo trains and reports on (issue #9): de fr es ru zh ja ar hi bn sw.
DEMO_LANGUAGES: tuple[str, ...] = ("de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "bn", "sw")

_BY_CORPUS_CODE = {lang.ntrex: lang.code for lang in LANGUAGES.values() if lang.ntrex}


class UnknownLanguageError(ValueError):
    pass


def get(code: str) -> Language:
    """The :class:`Language` for a BCP-47 code (``"de"``, ``"zh-CN"`` → ``zh``), or a clear error."""
    key = code.strip()
    if key in LANGUAGES:
        return LANGUAGES[key]
    base = key.replace("_", "-").split("-")[0].lower()
    if base in LANGUAGES:
        return LANGUAGES[base]
    if key in _BY_CORPUS_CODE:
        return LANGUAGES[_BY_CORPUS_CODE[key]]
    known = ", ".join(sorted(LANGUAGES))
    raise UnknownLanguageError(f"unknown language {code!r}; known codes: {known}")


def from_corpus_code(corpus_code: str) -> str:
    """Map an NTREX file code (``deu``, ``zho-CN``) to our short code."""
    if corpus_code in _BY_CORPUS_CODE:
        return _BY_CORPUS_CODE[corpus_code]
    raise UnknownLanguageError(f"no language maps to corpus code {corpus_code!r}")


def name(code: str) -> str:
    return get(code).name
