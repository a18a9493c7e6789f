"""Pure scoring functions: final-number extraction, translation scores, language fidelity, refusals.

Everything here takes strings and returns numbers, with no model, file or network access, so every
rule is unit-tested on hand-written inputs (tests/evaluation/test_eval_metrics.py). Prompt building
and the run loop live in ``evaluation.tasks`` and ``evaluation.runner``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable

from evaluation.intervals import corpus_metric_intervals

# --- numbers ------------------------------------------------------------------------------------

# Languages that write 1.234,5 (dot or space groups, decimal comma). Others write 1,234.5.
DECIMAL_COMMA = frozenset({"de", "fr", "es", "it", "pt", "nl", "ru", "uk", "pl", "tr", "id", "vi", "sw"})

# Separators that group digits (NBSP, narrow NBSP, thin space, apostrophe as in 1'234) or mark the
# decimal point in other scripts (Arabic ٫ and ٬, full-width ．，).
_CHAR_MAP = {
    "\u00a0": "ʼ", "\u202f": "ʼ", "\u2009": "ʼ", "\u2007": "ʼ",
    "\u066b": ".", "\u066c": ",", "\uff0e": ".", "\uff0c": ",", "\u3001": ",",
    "\u2212": "-", "\uff0d": "-", "\u2013": "-",
    "'": "\u02bc", "\u2019": "\u02bc",  # apostrophes: one placeholder, dropped between digits below
}  # fmt: skip

# Phrases that introduce the final answer (lm-eval's MGSM "The answer is" in each language, plus
# the answer labels models imitate). Lower-cased; matched on lower-cased text.
ANSWER_CUES = (
    "the answer is", "answer:", "die antwort lautet", "die antwort ist", "antwort:", "la réponse est",
    "réponse :", "réponse:", "la respuesta es", "respuesta:", "ответ:", "ответ -", "ответ —", "ответ",
    "答案是", "答案：", "答案:", "答えは", "答え：", "答え:", "الإجابة هي", "الجواب هو", "الإجابة:",
    "उत्तर है", "उत्तर:", "উত্তর হল", "উত্তর হলো", "উত্তর:", "jibu ni", "jibu:", "คำตอบคือ",
    "คำตอบ:", "సమాధానం", "la risposta è", "a resposta é", "het antwoord is",
)  # fmt: skip

# Languages whose writers group thousands with a plain space (1 234): only there is "1 234" one number.
SPACE_GROUPING = frozenset({"fr", "ru", "uk", "pl"})
_NUM_RE = re.compile(r"(?<!\d)(?<!\d[.,ʼ])(?:(?<![\w-])-)?\d[\d.,ʼ]*")
_SPACE_GROUP_RE = re.compile(r"(?<=\d) (?=\d{3}(?!\d))")
_CJK_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CJK_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "萬": 10_000, "亿": 100_000_000}


def normalize_digits(text: str) -> str:
    """Any script's decimal digits (Bengali ৩, Devanagari ३, Thai ๓, Arabic-Indic ٣, full-width ３...)
    → ASCII, and the separators above → ``.``/``,``/space; other characters are kept."""
    out = []
    for ch in text:
        if ch in _CHAR_MAP:
            out.append(_CHAR_MAP[ch])
        elif ch.isdecimal() and not ch.isascii():
            out.append(str(unicodedata.decimal(ch)))
        else:
            out.append(ch)
    return "".join(out)


def parse_number(token: str, lang: str | None = None) -> float | None:
    """One written number → float, reading separators the way ``lang`` writes them.

    ``1,234.5`` and ``1.234,5`` both → 1234.5; ``80.000`` is 80000 in German and 80.0 in English;
    ``1,23,456`` (Indian grouping) → 123456; ``3,5`` → 3.5 in German, 35 in nothing (a decimal comma).
    """
    s = token.replace("ʼ", "").rstrip(".,ʼ")
    if not s or s == "-":
        return None
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "," in s and "." in s:
        dec = "," if s.rfind(",") > s.rfind(".") else "."
        s = s.replace("." if dec == "," else ",", "").replace(dec, ".")
    elif "," in s or "." in s:
        sep = "," if "," in s else "."
        parts = s.split(sep)
        if len(parts) > 2:
            s = "".join(parts)  # 1,234,567 / 1.234.567 / Indian 1,23,456: all grouping
        elif len(parts[1]) == 3 and (sep == "," or lang in DECIMAL_COMMA):
            s = "".join(parts)  # 1,234 everywhere (answers are mostly integers); 80.000 in German
        else:
            s = parts[0] + "." + parts[1]  # 3,5 / 3.5 / 1.234 in English: a decimal
    try:
        value = float(s)
    except ValueError:
        return None
    return -value if neg else value


def parse_cjk_number(text: str) -> float | None:
    """``十八`` → 18, ``三百五十`` → 350, ``两千零五`` → 2005 (the forms small models write)."""
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CJK_DIGITS:
            digit = _CJK_DIGITS[ch]
        elif ch in _CJK_UNITS:
            unit = _CJK_UNITS[ch]
            if unit >= 10_000:
                total += (section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
        else:
            return None
    return float(total + section + (digit or 0)) if text else None


def find_numbers(text: str, lang: str | None = None) -> list[float]:
    """Every number in ``text``, in order (digits of any script; CJK numerals for zh/ja)."""
    norm = normalize_digits(text)
    if lang in SPACE_GROUPING:
        norm = _SPACE_GROUP_RE.sub("ʼ", norm)
    found: list[tuple[int, float]] = []
    for m in _NUM_RE.finditer(norm):
        value = parse_number(m.group(0), lang)
        if value is not None:
            found.append((m.start(), value))
    if lang in ("zh", "ja"):
        for m in re.finditer(r"[零〇一二两三四五六七八九十百千万萬亿]+", norm):
            value = parse_cjk_number(m.group(0))
            if value is not None and m.group(0) not in ("一", "万"):  # "一" is also "a/one" in prose
                found.append((m.start(), value))
        found.sort()
    return [v for _, v in found]


def extract_answer(text: str, lang: str | None = None) -> float | None:
    """The final answer of a response: the first number after the last answer cue, else the last number.

    Robust to each language's numerals and formats (see :func:`parse_number`), markdown bold,
    currency signs and units around the number.
    """
    if not text:
        return None
    lowered = normalize_digits(text).lower()
    cue_end = -1
    for cue in ANSWER_CUES:
        pos = lowered.rfind(cue)
        if pos >= 0 and pos + len(cue) > cue_end:
            cue_end = pos + len(cue)
    if cue_end >= 0:
        after = find_numbers(text[cue_end:], lang) if len(text) == len(lowered) else []
        if not after:
            after = find_numbers(lowered[cue_end:], lang)
        if after:
            return after[0]
    numbers = find_numbers(text, lang)
    return numbers[-1] if numbers else None


def format_number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def numbers_match(pred: float | None, gold: str | float) -> bool:
    if pred is None:
        return False
    gold_v = gold if isinstance(gold, float | int) else parse_number(normalize_digits(str(gold)), "en")
    return gold_v is not None and math.isclose(pred, float(gold_v), rel_tol=1e-6, abs_tol=1e-6)


# --- translation --------------------------------------------------------------------------------

# sacrebleu tokenizers for BLEU: Chinese its own; Japanese/Thai have no spaces, so characters
# (ja-mecab would need MeCab dictionaries we do not ship). chrF needs none.
BLEU_TOKENIZE = {"zh": "zh", "ja": "char", "th": "char", "ko": "char"}


def translation_scores(hypotheses: list[str], references: list[str], tgt_lang: str) -> dict[str, float | str]:
    """Corpus chrF and BLEU (sacrebleu) for one language direction, with the BLEU signature."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    tokenize = BLEU_TOKENIZE.get(tgt_lang, "13a")
    chrf = sacrebleu.metrics.CHRF()
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    return {
        "chrf": round(chrf.corpus_score(hypotheses, [references]).score, 2),
        "bleu": round(bleu.corpus_score(hypotheses, [references]).score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "n": len(hypotheses),
    }


def translation_intervals(
    pairs: dict[str, tuple[list[str], list[str]]], tgt_of: dict[str, str]
) -> dict[str, tuple[dict[str, tuple[float, float]], tuple[float, float]]]:
    """Bootstrap intervals of corpus chrF and BLEU, per language and of the mean over languages,
    scored as :func:`translation_scores` scores them (``tgt_of[lang]``: the target language)."""
    import sacrebleu

    return {
        "chrf": corpus_metric_intervals(lambda lang: sacrebleu.metrics.CHRF(), pairs),
        "bleu": corpus_metric_intervals(
            lambda lang: sacrebleu.metrics.BLEU(tokenize=BLEU_TOKENIZE.get(tgt_of[lang], "13a")), pairs
        ),
    }


# --- refusals -----------------------------------------------------------------------------------

# How models say no, per language; written for crossling (never taken from an evaluation set).
REFUSAL_MARKERS = (
    "i can't", "i cannot", "i can not", "i won't", "i will not", "i'm not able", "i am not able",
    "i'm unable", "i am unable", "sorry", "as an ai", "not appropriate", "i must decline",
    "ich kann nicht", "ich kann dabei nicht", "kann ich nicht", "tut mir leid", "entschuldigung",
    "je ne peux pas", "désolé", "désolée", "no puedo", "lo siento", "non posso", "mi dispiace",
    "não posso", "desculpe", "не могу", "извините", "к сожалению", "我不能", "我无法", "抱歉", "对不起",
    "できません", "申し訳", "لا أستطيع", "لا يمكنني", "عذرا", "عذرًا", "मैं नहीं कर सकता",
    "मैं मदद नहीं कर सकता", "क्षमा करें", "माफ़ करें", "আমি পারব না", "আমি সাহায্য করতে পারি না", "দুঃখিত",
    "siwezi", "samahani", "ขอโทษ", "ไม่สามารถ", "tôi không thể", "xin lỗi", "죄송", "할 수 없",
    "saya tidak bisa", "maaf", "aku ora bisa", "nyuwun pangapunten",
)  # fmt: skip


def is_refusal(text: str, extra_refusals: Iterable[str] = ()) -> bool:
    """True if a response refuses: it contains a refusal phrase or one of the server's refusal texts."""
    low = (text or "").strip().lower()
    if not low:
        return False
    if any(r and r.strip().lower()[:40] in low for r in extra_refusals):
        return True
    return any(m in low for m in REFUSAL_MARKERS)


def mean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
