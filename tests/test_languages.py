"""The language table and language identification."""

import pytest

from crossling import langid, languages


def test_codes_and_corpus_codes():
    assert languages.get("zh-CN").code == "zh"
    assert languages.get("pt_BR").name == "Portuguese"
    assert languages.from_corpus_code("zho-CN") == "zh"
    assert languages.from_corpus_code("arb") == "ar"
    assert all(languages.get(c).code == c for c in languages.DEMO_LANGUAGES)


def test_unknown_language_lists_known_codes():
    with pytest.raises(languages.UnknownLanguageError, match="known codes: .*sw"):
        languages.get("klingon")


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Die Hauptstadt von Deutschland ist Berlin.", "de"),
        ("La capitale de la France est Paris.", "fr"),
        ("Столица Франции — Париж.", "ru"),
        ("法国的首都是巴黎。", "zh"),
        ("フランスの首都はパリです。", "ja"),
        ("عاصمة فرنسا هي باريس", "ar"),
        ("फ्रांस की राजधानी पेरिस है", "hi"),
        ("ফ্রান্সের রাজধানী প্যারিস", "bn"),
        ("Mji mkuu wa Ufaransa ni Paris na ni mzuri sana.", "sw"),
        ("ሰላም ነው", "am"),
    ],
)
def test_detect(text, lang):
    assert langid.detect(text) == lang
    assert langid.is_language(text, lang)


def test_no_letters_is_unknown_but_not_wrong():
    assert langid.detect("12 + 5 = 17") is None
    assert langid.is_language("42", "de")
    assert not langid.is_language("The capital of France is Paris.", "de")
