"""Scoring rules on hand-written inputs: final-number extraction across languages, translation
scores, language fidelity and refusal detection — exact values, no models."""

from __future__ import annotations

import pytest

from crossling.generation import clean_translation
from crossling.langid import in_language
from evaluation import metrics
from evaluation.intervals import sample_mean_intervals
from evaluation.tasks.base import group_means


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The answer is 18.", "en", 18),
        ("5 + 6 = 11. The answer is **11**", "en", 11),
        ("She pays $1,234.50 in total.", "en", 1234.5),
        ("1.5 hours", "en", 1.5),
        ("It was -5 degrees", "en", -5),
        ("10-2=8", "en", 8),
        ("Die Antwort lautet 80.000 US-Dollar.", "de", 80000),  # dot groups thousands in German
        ("Es kostet 1.234,5 Euro", "de", 1234.5),
        ("Also 3,5 kg insgesamt", "de", 3.5),
        ("La réponse est 1 234.", "fr", 1234),  # plain space groups thousands in French
        ("Il a 1\u202f500 pommes", "fr", 1500),  # narrow no-break space
        ("Ответ: 1 250 рублей", "ru", 1250),
        ("La respuesta es 70.000", "es", 70000),
        ("উত্তর হল ১৮।", "bn", 18),  # Bengali digits
        ("उत्तर है १,२३,४५६", "hi", 123456),  # Devanagari digits, Indian grouping
        ("คำตอบคือ ๑๘", "th", 18),  # Thai digits
        ("الإجابة هي ١٨", "ar", 18),  # Arabic-Indic digits
        ("الإجابة هي ٣٫٥", "ar", 3.5),  # Arabic decimal separator
        ("答案是１８。", "zh", 18),  # full-width digits
        ("她有18个苹果", "zh", 18),  # no spaces around the number
        ("答案是十八", "zh", 18),  # Chinese numerals
        ("答案是三百五十", "zh", 350),
        ("答えは２５０個です", "ja", 250),
        ("Jibu ni 1,500", "sw", 1500),
        ("Step 1: 3 + 4 = 7. Step 2: 7 * 2 = 14.", "en", 14),  # no cue: last number
        ("The answer is 12. Then 5 more apples.", "en", 12),  # first number after the last cue
        ("no number here", "en", None),
        ("", "en", None),
    ],
)
def test_extract_answer_across_languages(text, lang, expected):
    assert metrics.extract_answer(text, lang) == expected


@pytest.mark.parametrize(
    ("token", "lang", "expected"),
    [
        ("1,234", "en", 1234),
        ("1,234", "de", 1234),
        ("1.234", "en", 1.234),
        ("1.234", "de", 1234),
        ("1,234,567.89", "en", 1234567.89),
        ("1.234.567,89", "de", 1234567.89),
        ("3,5", "en", 3.5),
        ("18.", "en", 18),
    ],
)
def test_parse_number_reads_separators_per_language(token, lang, expected):
    assert metrics.parse_number(token, lang) == expected


def test_normalize_digits_maps_every_script():
    assert metrics.normalize_digits("১২৩ १२३ ๑๒๓ ١٢٣ ۱۲۳ １２３ ౧౨౩") == "123 123 123 123 123 123 123"


def test_numbers_match_compares_values_not_strings():
    assert metrics.numbers_match(18.0, "18")
    assert metrics.numbers_match(1234.0, "1,234")
    assert not metrics.numbers_match(18.5, "18")
    assert not metrics.numbers_match(None, "18")


def test_translation_scores_exact_values():
    perfect = metrics.translation_scores(["Der Hund schläft."], ["Der Hund schläft."], "de")
    assert perfect["chrf"] == 100.0 and perfect["bleu"] == 100.0
    disjoint = metrics.translation_scores(["xyz"], ["Der Hund schläft."], "de")
    assert disjoint["chrf"] == 0.0 and disjoint["bleu"] == 0.0
    partial = metrics.translation_scores(["Der Hund schläft heute."], ["Der Hund schläft."], "de")
    # By hand: 13a tokens "Der Hund schläft heute ." vs "Der Hund schläft ."; n-gram precisions 4/5, 2/4,
    # 1/3 and 0/2 (exp smoothing: 1/(2*2)); no brevity penalty: (0.8*0.5*0.3333*0.25)^(1/4) = 42.73.
    assert partial["bleu"] == 42.73
    assert partial["chrf"] == 86.01  # sacrebleu 2.x chrF (char 6-grams, beta 2)
    assert partial["n"] == 1


def test_translation_scores_tokenize_chinese_for_bleu():
    # Without the zh tokenizer the unsegmented sentence is one token and BLEU would be 0.
    s = metrics.translation_scores(["我今天很高兴去学校"], ["我今天很高兴去学校上课"], "zh")
    assert s["bleu"] > 0
    assert "tok:zh" in s["bleu_signature"]


def test_clean_translation_drops_labels_and_quotes():
    assert (
        clean_translation("German translation:\nDer Hund schläft.\nExplanation: ...") == "Der Hund schläft."
    )
    assert clean_translation('"Ja", sagte er.') == '"Ja", sagte er.'  # quotes belong to the sentence
    assert clean_translation("  \n") == ""


def test_in_language():
    assert in_language("Der Himmel ist blau, weil das Sonnenlicht gestreut wird.", "de")
    assert not in_language("The sky is blue because sunlight is scattered.", "de")
    assert in_language("আকাশ নীল কারণ সূর্যের আলো ছড়িয়ে পড়ে।", "bn")
    assert not in_language("", "de")


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("Tut mir leid, dabei kann ich nicht helfen.", True),
        ("抱歉，我无法提供帮助。", True),
        ("Samahani, siwezi kusaidia na hilo.", True),
        ("Here is a recipe for bread: flour, water, salt.", False),
        ("", False),
    ],
)
def test_is_refusal(text, refused):
    assert metrics.is_refusal(text) is refused


def test_is_refusal_knows_the_servers_own_refusals():
    custom = "Ombi hili haliwezi kushughulikiwa hapa."
    assert not metrics.is_refusal(custom)
    assert metrics.is_refusal(custom, extra_refusals=[custom])


def test_group_means_averages_by_language_then_over_languages():
    records = [
        {"subtask": "t", "lang": "de", "acc": 1.0},
        {"subtask": "t", "lang": "de", "acc": 0.0},
        {"subtask": "t", "lang": "de", "acc": 1.0},
        {"subtask": "t", "lang": "bn", "acc": 0.0},
    ]
    scores = group_means(records, ["acc"])
    assert scores["t"]["per_language"]["de"] == {"acc": 0.6667, "n": 3, "ci": {"acc": [0.0, 1.0]}}
    assert scores["t"]["per_language"]["bn"] == {"acc": 0.0, "n": 1, "ci": {"acc": [0.0, 0.0]}}
    assert scores["t"]["mean"] == {"acc": 0.3333}  # unweighted over languages, not over samples
    # the interval of the mean resamples within each language: bn is always 0, de in {0, 1/3, 2/3, 1}
    assert scores["t"]["ci"] == {"acc": [0.0, 0.5]}


def test_bootstrap_intervals_narrow_with_more_samples_and_cover_the_estimate():
    rng = __import__("random").Random(0)
    small = {lang: [float(rng.random() < 0.7) for _ in range(20)] for lang in ("de", "fr")}
    large = {lang: [float(rng.random() < 0.7) for _ in range(500)] for lang in ("de", "fr")}
    (_, (lo_s, hi_s)), (_, (lo_l, hi_l)) = sample_mean_intervals(small), sample_mean_intervals(large)
    assert hi_l - lo_l < (hi_s - lo_s) / 2  # ~1/sqrt(n)
    assert lo_l < 0.7 < hi_l


def test_chrf_interval_is_the_corpus_score_of_resampled_sentences():
    hyps = ["Der Hund schläft.", "Die Katze frisst.", "Ein Haus am See.", "Guten Morgen!"]
    refs = ["Der Hund schläft.", "Die Katze schläft.", "Ein Haus am Meer.", "Gute Nacht!"]
    intervals = metrics.translation_intervals(
        {"de": (hyps, refs), "fr": (hyps[:1], refs[:1])}, {"de": "de", "fr": "fr"}
    )
    (lo, hi) = intervals["chrf"][0]["de"]
    corpus = metrics.translation_scores(hyps, refs, "de")["chrf"]
    assert lo < corpus < hi and hi <= 100.0
    assert intervals["chrf"][0]["fr"] == (100.0, 100.0)  # one perfect sentence: nothing to resample
