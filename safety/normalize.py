"""Text normalisation that undoes the usual filter-evasion tricks before classification.

Stages, in order (each is a plain function so tests can check one trick at a time):

1. Unicode NFKC: full-width letters, ligatures, circled/styled letters fold to their plain forms.
2. Invisible characters: zero-width spaces/joiners, soft hyphens, word joiners, BOM and bidi
   controls (LRO/RLO/isolates) are removed; they split words for a matcher but not for a reader.
3. Case folding, and Latin diacritics stripped (``ṣé``→``se``): Yoruba, Vietnamese, Hausa are often
   typed without their marks, so the classifier sees one spelling. Marks on non-Latin letters
   (Devanagari/Bengali vowel signs) are kept: there they are letters, not accents.
4. Homoglyphs: inside a word that mixes Latin with Cyrillic/Greek letters, the look-alikes become
   Latin (``bоmb`` with a Cyrillic ``о``). Whole Cyrillic/Greek words are left alone (Russian stays
   Russian).
5. Leetspeak: inside a word that has letters *and* digits/symbols (``b0mb``, ``h@ck``, ``k1ll``),
   digits and symbols map to letters. Pure numbers (``1945``) are untouched.
6. Spacing tricks: three or more single letters separated by spaces, dots, dashes, underscores or
   asterisks are joined (``b o m b``, ``b.o.m.b``); letter runs of 3+ collapse (``boooomb``).

This module only rewrites text; it does not decide anything. It is not a transliterator: text in
another script is not converted to Latin.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and formatting characters that render as nothing, plus bidi embedding/override/isolate
# controls. ZWJ/ZWNJ are legitimate in Indic/Persian spelling but carry no meaning for a classifier.
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0]
    + list(range(0x200B, 0x2010))  # ZWSP, ZWNJ, ZWJ, LRM, RLM
    + list(range(0x202A, 0x202F))  # LRE RLE PDF LRO RLO
    + list(range(0x2060, 0x2070))  # word joiner, invisible operators, LRI RLI FSI PDI, ...
    + list(range(0xFE00, 0xFE10))  # variation selectors
)

# Cyrillic / Greek letters that look like Latin ones (lower case; text is case-folded first).
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
        "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "α": "a", "β": "b", "ε": "e", "η": "n",
        "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
        "γ": "y", "μ": "u",
    }
)  # fmt: skip

_LEET = str.maketrans(
    {"0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "£": "l", "+": "t"}
)  # fmt: skip
_LEET_CHARS = set("0123456789@$!|€£+")

_WORD = re.compile(r"[^\s]+")
# 3+ single letters separated by one kind of light separator: "b o m b", "b.o.m.b", "b-o-m-b"
_SPACED = re.compile(r"(?<![^\W\d_])((?:[^\W\d_][ .\-_*·•]{1,2}){2,}[^\W\d_])(?![^\W\d_])")
_RUNS = re.compile(r"([^\W\d_])\1{2,}")


_RLO_SPAN = re.compile("\u202e([^\u202c]*)\u202c?")


def remove_invisible(text: str) -> str:
    """Drop invisible characters; a right-to-left override span is first put in reading order."""
    if "\u202e" in text:
        # "\u202ebmob" displays as "bomb": the reader sees the reversed span, so the classifier must too
        text = _RLO_SPAN.sub(lambda m: m.group(1)[::-1], text)
    return text.translate(_INVISIBLE)


def strip_latin_marks(text: str) -> str:
    """Drop combining marks that sit on Latin letters; keep marks on other scripts."""
    decomposed = unicodedata.normalize("NFD", text)
    out: list[str] = []
    base_is_latin = False
    for ch in decomposed:
        if unicodedata.combining(ch):
            if not base_is_latin:
                out.append(ch)
            continue
        base_is_latin = ch < "\u0250" and ch.isalpha()
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _fold_word(word: str) -> str:
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        return word
    has_latin = any(_is_latin(ch) for ch in letters)
    if has_latin and not all(_is_latin(ch) for ch in letters):
        folded = word.translate(_HOMOGLYPHS)
        # only fold if the word becomes (mostly) Latin: a real mixed-script compound stays as is
        if sum(_is_latin(ch) for ch in folded if ch.isalpha()) >= 0.6 * len(letters):
            word = folded
    if has_latin and any(ch in _LEET_CHARS for ch in word):
        core = word.strip(".,;:?!\"'()[]{}")  # trailing "!" or "?" is punctuation, not a letter
        lead = word[: word.index(core)] if core else ""
        tail = word[len(lead) + len(core) :]
        word = lead + core.translate(_LEET) + tail
    return word


def fold_words(text: str) -> str:
    """Homoglyph and leetspeak folding, word by word."""
    return _WORD.sub(lambda m: _fold_word(m.group(0)), text)


# one-letter words that often stand before a spaced-out word ("make a b o m b")
_ONE_LETTER_WORDS = frozenset("aiouey")


def _join(match: re.Match) -> str:
    run = match.group(1)
    letters = re.sub(r"[ .\-_*·•]", "", run)
    if len(letters) >= 4 and letters[0] in _ONE_LETTER_WORDS and run[1] == " " and run[2:3].isalpha():
        return letters[0] + " " + letters[1:]
    return letters


def join_spaced_letters(text: str) -> str:
    return _SPACED.sub(_join, text)


def collapse_runs(text: str) -> str:
    return _RUNS.sub(r"\1", text)


def deobfuscate(text: str) -> str:
    """Only the evasion tricks undone (invisible characters, homoglyphs, leetspeak, spaced letters),
    case, accents and script kept: the form a model that reads real text (the guard) sees a second
    time when it differs from what was sent. Ordinary text comes back unchanged."""
    return join_spaced_letters(fold_words(remove_invisible(text)))


def normalize(text: str) -> str:
    """All stages; the n-gram classifier sees only this form of the text."""
    text = unicodedata.normalize("NFKC", text)
    text = remove_invisible(text)
    text = strip_latin_marks(text.casefold())
    text = fold_words(text)
    text = join_spaced_letters(text)
    text = collapse_runs(text)
    return re.sub(r"\s+", " ", text).strip()
