"""The built-in hazard classifier: char n-grams + one linear model, multilingual, ~1 ms on one core.

Why this shape: a harmful request in Swahili or Javanese shares few words with English training
data, but a character n-gram model trained on examples *written in those languages* needs no
tokenizer, no GPU and no language-specific code, and it keeps working on morphology-rich and
unsegmented scripts (Amharic, Thai, Chinese). Normalised text (``safety.normalize``) goes in;
features are hashed ``char_wb`` 2-5-grams (no vocabulary to ship) with sublinear TF-IDF; one
one-vs-rest logistic regression (SGD-trained) predicts ``benign`` or one of the hazard categories, and a second
one on the same features predicts the language (lingua has no Javanese or Hausa model).

Scores: ``harm = 1 - P(benign)``; category ``c`` scores ``harm * P(c) / max_c' P(c')`` so the top
category's score equals ``harm`` and thresholds read the same for every category.

The trained model ships as ``data/safety/hazard_model.npz`` (float16 weights of the hashed columns
seen in training). It is trained from ``data/safety/seed.jsonl`` (+ NTREX train sentences and GSM8K
questions as extra benign text); if the seed changes, the filter retrains on first use (about a
minute on a busy 2-core machine) and caches under ``~/.cache/crossling/safety/``.
This module knows nothing about policy (what to block) or the web.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossling import corpora
from safety.categories import CATEGORY_IDS
from safety.normalize import normalize
from safety.seed import REPO, SEED_PATH, held_out_groups, load_seed

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("CROSSLING_CACHE", Path.home() / ".cache" / "crossling")) / "safety"
MODEL_PATH = REPO / "data" / "safety" / "hazard_model.npz"  # shipped, ~MBs; rebuilt by `train`
FORMAT_VERSION = 4  # bump when features or training change, so stale caches are not reused
BENIGN = "benign"


@dataclass
class TrainSettings:
    n_features: int = 2**19
    ngram_min: int = 2
    ngram_max: int = 5
    alpha: float = 1e-5  # L2 strength of the SGD-trained linear models
    epochs: int = 10
    ntrex_per_language: int = 400  # NTREX *train* sentences per language as extra benign text
    gsm8k_questions: int = 300
    seed: int = 0
    # calibration: the harm score that keeps benign FPR at target_fpr on held-out phrase groups
    # (trained on the other groups) is what the filter maps onto the policy threshold; 0 = off
    target_fpr: float = 0.05
    dev_fraction: float = 0.2


def _vectorizer(s: TrainSettings):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(s.ngram_min, s.ngram_max),
        n_features=s.n_features,
        alternate_sign=False,
        norm=None,
        lowercase=False,  # normalize() already case-folds
        dtype=np.float32,
    )


def extra_benign(settings: TrainSettings) -> list[tuple[str, str]]:
    """(text, lang) news sentences (NTREX train documents only) and GSM8K train questions.

    They teach the model that war, crime and medicine *reported* in neutral prose are not requests
    for harm. Missing sources are skipped with a warning (the seed alone still trains a model).
    """
    rng = random.Random(settings.seed)
    out: list[tuple[str, str]] = []
    try:
        train_ids = corpora.ntrex_line_ids("train")
        for lang in corpora.ntrex_languages():
            if lang == "en":
                continue
            sents = corpora.ntrex_sentences(lang)
            picked = rng.sample(train_ids, min(settings.ntrex_per_language, len(train_ids)))
            out += [(sents[i], lang) for i in picked]
        en = corpora.ntrex_sentences("en")
        out += [(en[i], "en") for i in rng.sample(train_ids, settings.ntrex_per_language)]
        gsm = corpora.gsm8k_train()
        out += [(r["question"], "en") for r in rng.sample(gsm, min(settings.gsm8k_questions, len(gsm)))]
    except Exception as e:  # noqa: BLE001 - optional data; the seed is enough to train
        log.warning("safety classifier: extra benign text unavailable (%s); training on the seed only", e)
    return out


class HazardClassifier:
    """Scores normalised text: P(harmful), per-category scores, and a language guess."""

    def __init__(self, settings: TrainSettings, idf: np.ndarray, cat_model, lang_model):
        self.settings = settings
        self.vectorizer = _vectorizer(settings)
        self.idf = idf.astype(np.float32)
        self.labels: list[str] = list(cat_model.classes_)
        self._benign_idx = self.labels.index(BENIGN)
        self._coef = cat_model.coef_.astype(np.float32).T.copy()  # (features, classes)
        self._bias = cat_model.intercept_.astype(np.float32)
        self.languages: list[str] = list(lang_model.classes_)
        self._lang_coef = lang_model.coef_.astype(np.float32).T.copy()
        self._lang_bias = lang_model.intercept_.astype(np.float32)
        self.threshold = 0.5  # the calibrated harm threshold (see ``train_calibrated``)

    # --- inference -----------------------------------------------------------------------------
    def _features(self, texts: Sequence[str]):
        from sklearn.preprocessing import normalize as l2

        x = self.vectorizer.transform(texts)
        x.data = 1.0 + np.log(x.data)  # sublinear tf
        x = x.multiply(self.idf).tocsr()
        return l2(x)

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        # one-vs-rest models: each class's sigmoid, normalised to sum to one (as sklearn does)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-9)

    def predict(self, normalized: Sequence[str]) -> list[tuple[float, dict[str, float]]]:
        """For each normalised text: (harm probability, {category: score})."""
        probs = self._softmax(self._features(normalized) @ self._coef + self._bias)
        out = []
        for p in probs:
            harm = float(1.0 - p[self._benign_idx])
            cat_p = {lab: float(p[i]) for i, lab in enumerate(self.labels) if lab != BENIGN}
            top = max(cat_p.values()) or 1.0
            out.append((harm, {c: harm * cat_p.get(c, 0.0) / top for c in CATEGORY_IDS}))
        return out

    def predict_language(self, normalized: str) -> tuple[str, float]:
        p = self._softmax(self._features([normalized]) @ self._lang_coef + self._lang_bias)[0]
        i = int(p.argmax())
        return self.languages[i], float(p[i])

    # --- training ------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        rows: list[dict],
        settings: TrainSettings | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> HazardClassifier:
        """Fit on seed rows (+ extra benign (text, lang) pairs). A few seconds on one core."""
        from sklearn.linear_model import SGDClassifier

        s = settings or TrainSettings()
        extra = extra_benign(s) if extra is None else extra
        texts = [normalize(r["text"]) for r in rows] + [normalize(t) for t, _ in extra]
        labels = [r["category"] if r["label"] == "harmful" else BENIGN for r in rows] + [BENIGN] * len(extra)
        langs = [r["lang"] for r in rows] + [lang for _, lang in extra]
        vec = _vectorizer(s)
        x = vec.transform(texts)
        df = np.asarray((x > 0).sum(axis=0)).ravel()
        idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        from sklearn.preprocessing import normalize as l2

        x.data = 1.0 + np.log(x.data)
        x = l2(x.multiply(idf).tocsr())

        # SGD on a linear log-loss model: seconds instead of minutes for lbfgs on ~500k sparse columns
        def sgd(balanced: bool) -> SGDClassifier:
            return SGDClassifier(
                loss="log_loss", alpha=s.alpha, max_iter=s.epochs, tol=None, random_state=s.seed,
                class_weight="balanced" if balanced else None,
            )  # fmt: skip

        cat_model = sgd(True).fit(x, labels)
        lang_model = sgd(False).fit(x, langs)
        return cls(s, idf, cat_model, lang_model)


def heldout_harm(rows: list[dict], settings: TrainSettings) -> tuple[list[dict], list[float]]:
    """Train on all but ``settings.dev_fraction`` of the phrase groups; the held-out rows and their harm
    scores. Every framing of a phrase stays on one side, so this measures unseen phrasings."""
    held = held_out_groups(rows, settings.dev_fraction, seed=0)
    model = HazardClassifier.train([r for r in rows if r["group"] not in held], settings)
    dev = [r for r in rows if r["group"] in held]
    return dev, [h for h, _ in model.predict([normalize(r["text"]) for r in dev])]


def threshold_at_fpr(benign_scores: Sequence[float], target_fpr: float) -> float:
    """The lowest score that flags at most ``target_fpr`` of these benign scores."""
    ordered = sorted(benign_scores)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * (1 - target_fpr)))]) + 1e-6


def train_calibrated(rows: list[dict], settings: TrainSettings) -> HazardClassifier:
    """Fit on all rows; with ``settings.target_fpr`` > 0, first pick the harm threshold on held-out
    phrase groups (never on an evaluation set) and store it in the model."""
    threshold = 0.5
    if settings.target_fpr > 0 and settings.dev_fraction > 0:
        dev, harm = heldout_harm(rows, settings)
        threshold = threshold_at_fpr([h for r, h in zip(dev, harm, strict=True) if r["label"] != "harmful"],
                                     settings.target_fpr)  # fmt: skip
    model = HazardClassifier.train(rows, settings)
    model.threshold = threshold
    return model


def seed_hash(seed_path: str | Path, settings: TrainSettings) -> str:
    h = hashlib.sha256(Path(seed_path).read_bytes())
    h.update(json.dumps([FORMAT_VERSION, settings.__dict__], sort_keys=True).encode())
    return h.hexdigest()[:16]


def save(model: HazardClassifier, path: str | Path, data_hash: str) -> None:
    """Write the model as a small ``.npz``: only hashed columns seen in training, float16 weights."""
    # columns whose weights are all tiny change no decision: dropping them keeps the file small
    strength = np.maximum(np.abs(model._coef).max(axis=1), np.abs(model._lang_coef).max(axis=1))
    seen = np.flatnonzero(strength > 0.02 * strength.max())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(
        tmp,
        columns=seen.astype(np.int32),
        idf=model.idf[seen].astype(np.float16),
        coef=model._coef[seen].astype(np.float16),
        bias=model._bias,
        lang_coef=model._lang_coef[seen].astype(np.float16),
        lang_bias=model._lang_bias,
        labels=np.array(model.labels),
        languages=np.array(model.languages),
        meta=np.array(
            json.dumps(
                {"settings": model.settings.__dict__, "data_hash": data_hash, "threshold": model.threshold}
            )
        ),  # fmt: skip
    )
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file


def load(path: str | Path) -> tuple[HazardClassifier, str]:
    """Read a model written by :func:`save`; returns (model, hash of the data it was trained on)."""
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    s = TrainSettings(**meta["settings"])
    cols = z["columns"]

    def full(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((s.n_features, rows.shape[1]), dtype=np.float32)
        out[cols] = rows
        return out

    idf = np.ones(s.n_features, dtype=np.float32)
    idf[cols] = z["idf"]
    model = HazardClassifier.__new__(HazardClassifier)
    model.settings, model.vectorizer, model.idf = s, _vectorizer(s), idf
    model.labels, model.languages = [str(x) for x in z["labels"]], [str(x) for x in z["languages"]]
    model._benign_idx = model.labels.index(BENIGN)
    model._coef, model._bias = full(z["coef"]), z["bias"].astype(np.float32)
    model._lang_coef, model._lang_bias = full(z["lang_coef"]), z["lang_bias"].astype(np.float32)
    model.threshold = float(meta.get("threshold", 0.5))
    return model, meta["data_hash"]


def load_or_train(
    model_path: str | Path = MODEL_PATH,
    seed_path: str | Path = SEED_PATH,
    cache_dir: str | Path | None = CACHE_DIR,
    settings: TrainSettings | None = None,
) -> HazardClassifier:
    """The shipped model when it matches the seed; else a cached or freshly trained one.

    A model trained on a different seed than the one on disk would silently disagree with the data
    the SFT recipe reads, so a mismatch retrains (seconds to a minute) and caches the result.
    """
    settings = settings or TrainSettings()
    want = seed_hash(seed_path, settings)
    candidates = [Path(model_path)] + ([Path(cache_dir) / f"hazard-{want}.npz"] if cache_dir else [])
    for path in candidates:
        if path.is_file():
            try:
                model, got = load(path)
            except Exception as e:  # noqa: BLE001 - an unreadable file is retrained, not fatal
                log.warning("safety classifier %s unreadable (%s); ignoring it", path, e)
                continue
            if got == want:
                return model
            log.warning("safety classifier %s was trained on other data; retraining", path)
    t0 = time.perf_counter()
    model = train_calibrated(load_seed(seed_path), settings)
    log.warning("safety classifier trained in %.1f s", time.perf_counter() - t0)
    if cache_dir:
        save(model, Path(cache_dir) / f"hazard-{want}.npz", want)
    return model
