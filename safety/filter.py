"""``SafetyFilter``: normalise → language → n-gram classifier → guard model → [semantic] → guards →
policy → ``Verdict``.

A plain object with no web code, shared by the server (input check and windowed output check),
``/v1/moderations``, the data recipes' checks and ``bench/safety_eval.py``. Thread-safe for reads:
one instance serves many requests.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from crossling import langid
from crossling.config import load_config
from safety.categories import CATEGORY_IDS
from safety.classifier import MODEL_PATH, HazardClassifier, load_or_train
from safety.config import SafetyConfig
from safety.guard_model import GuardStage, build_guard_stage
from safety.guards import Guard, GuardError, build_guards
from safety.normalize import deobfuscate, normalize
from safety.refusals import refusal_text
from safety.seed import REPO, SEED_PATH
from safety.semantic import SemanticStage, build_semantic, rescale
from safety.verdict import Verdict

log = logging.getLogger(__name__)

# the shipped policy: what `make serve`, `make demo` and the eval's `safety_filter: auto` load
POLICY_PATH = REPO / "configs" / "safety" / "default.yaml"

_SEVERITY = {"allow": 0, "flag": 1, "block": 2}
# languages lingua cannot identify; our own language model decides them when it is confident
_UNSUPPORTED_BY_LINGUA = ("jv", "ha")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।۔\n])\s*")
# control characters (not tab/newline): they carry no meaning, and NUL cut texts short in C encoders
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WIDE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def letter_count(text: str) -> int:
    """Letters in ``text``; a Han, kana or Hangul character counts 2 (one is often a whole word)."""
    return sum(ch.isalpha() for ch in text) + len(_WIDE.findall(text))


class SafetyFilter:
    """The multilingual safety filter. ``check(text, role) -> Verdict``; ``refusal(lang, cat) -> str``."""

    def __init__(
        self,
        config: SafetyConfig | None = None,
        classifier: HazardClassifier | None = None,
        guards: list[Guard] | None = None,
        semantic: SemanticStage | None = None,
        guard_model: GuardStage | None = None,
    ):
        self.config = config or SafetyConfig()
        self.classifier = classifier or load_or_train(
            self.config.model_path or MODEL_PATH, self.config.seed_path or SEED_PATH
        )
        self.guards = build_guards(self.config.guards, self) if guards is None else guards
        # None when disabled or when its LM/heads are not available (it is optional)
        self.semantic = semantic if semantic is not None else build_semantic(self.config.semantic)
        # the fine-tuned guard model (None when disabled or not loadable: the n-gram stage decides)
        self.guard_model = (
            guard_model if guard_model is not None else build_guard_stage(self.config.guard_model)
        )

    @classmethod
    def from_config(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> SafetyFilter:
        """The policy in ``path``; without one the shipped policy (``POLICY_PATH``), whose settings
        ``SafetyConfig()``'s defaults repeat (a test holds them equal)."""
        return cls(load_config(SafetyConfig, path or POLICY_PATH, overrides))

    def warmup(self) -> None:
        """Load lingua's models (and run the semantic LM once) now, not on the first request."""
        langid.detect("warm up the language detector")
        if self.semantic is not None:  # torch's first CPU forward pass is ~10x slower than later ones
            self.semantic.raw_score("warm up the semantic stage")
        if self.guard_model is not None:
            for _ in range(3):
                self.guard_model.model.score(["warm up the guard model"])

    # --- stages ----------------------------------------------------------------------------------
    def windows(self, text: str) -> list[str]:
        """The whole text, plus sentence-sized pieces when it is long: one harmful sentence inside
        pages of harmless text must not be averaged away by the n-gram vector's normalisation."""
        size = self.config.window_chars
        if len(text) <= size:
            return [text]
        pieces, current = [text], ""
        for sentence in _SENTENCE_END.split(text):
            while len(sentence) > size:  # one very long "sentence": hard-wrap it with overlap
                pieces.append(sentence[:size])
                sentence = sentence[size * 3 // 4 :]
            if current and len(current) + len(sentence) > size // 2:
                pieces.append(current)
                current = ""
            current += sentence + " "
        if current.strip():
            if len(current) < size // 8 and len(pieces) > 1:  # a short tail is noise alone: merge it
                pieces[-1] += current
            else:
                pieces.append(current)
        if len(pieces) > self.config.max_windows + 1:  # bound latency on huge inputs: even sample
            step = (len(pieces) - 1) / self.config.max_windows
            pieces = [pieces[0]] + [pieces[1 + int(i * step)] for i in range(self.config.max_windows)]
        return pieces

    def language(self, text: str, normalized: str) -> str | None:
        """Our n-gram language model when it is sure (fast; knows Javanese and Hausa), else
        ``crossling.langid`` (lingua + scripts), else our model's guess if it is fair."""
        code, p = self.classifier.predict_language(normalized)
        if p >= 0.8 or (code in _UNSUPPORTED_BY_LINGUA and p >= 0.5):
            return code
        detected = langid.detect(text)
        return detected if detected is not None else (code if p >= 0.4 else None)

    def ranked_sentences(self, text: str, limit: int = 256) -> list[str]:
        """The text's sentences (at most ``limit``), most harmful first by the n-gram stage."""
        pairs = [(s, n) for s in _SENTENCE_END.split(text) if (n := normalize(s))][:limit]
        if not pairs:
            return []
        harms = [h for h, _ in self.classifier.predict([n for _, n in pairs])]
        return [s for _, (s, _) in sorted(zip(harms, pairs, strict=True), key=lambda p: -p[0])]

    def windows_for(self, stage: GuardStage | SemanticStage, text: str) -> list[str] | None:
        """The ranked sentences a model stage reads a long ``text`` by; None for a text it reads whole."""
        return self.ranked_sentences(text) if stage.splits(text) else None

    def scores(self, text: str) -> tuple[float, dict[str, float]]:
        """Built-in classifier only: (harm, per-category scores), max over windows, on the policy's
        scale (the classifier's calibrated threshold lands on the policy threshold, as the semantic
        stage's does)."""
        normalized = [normalize(w) for w in self.windows(text)]
        t, policy = self.classifier.threshold, self.config.threshold
        harm, cats = 0.0, dict.fromkeys(CATEGORY_IDS, 0.0)
        for h, c in self.classifier.predict([n for n in normalized if n]):
            k = rescale(h, t, policy) / h if h > 0 else 0.0
            harm = max(harm, h * k)
            for cat, v in c.items():
                cats[cat] = max(cats[cat], min(1.0, v * k))
        return harm, cats

    # --- the protocol ----------------------------------------------------------------------------
    def check(self, text: str, role: str = "user") -> Verdict:
        t0 = time.perf_counter()
        text = _CONTROL.sub(" ", text or "")
        if not self.config.enabled or letter_count(text) < self.config.min_letters:
            # too short to mean anything ("a", "b", "?"): nothing a classifier could judge
            notes = ["too short to score"] if text.strip() and self.config.enabled else []
            return Verdict(
                False, "allow", dict.fromkeys(CATEGORY_IDS, 0.0), None, _ms(t0), role=role, notes=notes
            )
        harm, cats = self.scores(text)
        lang = self.language(text, normalize(text[:1000]))
        notes: list[str] = []
        gm = self.config.guard_model
        if self.guard_model is not None and gm.applies(role):
            gmodel = self.guard_model
            g_harm, g_cats = gmodel.score(text, lang, self.config.threshold, self.windows_for(gmodel, text))
            notes.append(f"guard model: harm {g_harm:.3f}")
            if (plain := deobfuscate(text)) != text:  # "m4ke a b o m b": read it as written, and as meant
                p_harm, p_cats = gmodel.score(
                    plain, lang, self.config.threshold, self.windows_for(gmodel, plain)
                )
                notes.append(f"guard model, evasion undone: harm {p_harm:.3f}")
                g_cats = {c: max(g_cats[c], p_cats[c]) for c in g_cats}
            cats = g_cats if gm.replaces_ngram else {c: max(cats[c], g_cats[c]) for c in cats}
        self._semantic(text, lang, harm, role, cats, notes)
        for guard in self.guards:
            if not guard.applies(lang, harm, self.config):
                continue
            try:
                for cat, score in guard.scores(text, lang, role).items():
                    cats[cat] = max(cats.get(cat, 0.0), score)
            except GuardError as e:
                notes.append(f"{guard.name}: {e}")
                log.warning("safety guard %s failed: %s", guard.name, e)
                if self.config.on_guard_error == "closed":
                    return self._verdict(cats, lang, t0, role, notes, forced="guard_unavailable")
        return self._verdict(cats, lang, t0, role, notes)

    def _semantic(
        self, text: str, lang: str | None, harm: float, role: str, cats: dict[str, float], notes: list[str]
    ) -> None:
        """The optional frozen-encoder stage: its scores merge into ``cats`` by max."""
        if self.semantic is None or not self.config.semantic.applies(lang, harm, role):
            return
        # scores are mapped onto the policy's scale, then merged by max like the guards' scores
        # a long text is embedded by its sentences, ranked here (short texts need no ranking)
        windows = self.windows_for(self.semantic, text)
        s_harm, s_cats = self.semantic.score(text, policy_threshold=self.config.threshold, windows=windows)
        notes.append(f"semantic: harm {s_harm:.3f}")
        for cat, score in s_cats.items():
            cats[cat] = max(cats.get(cat, 0.0), score)

    def _verdict(
        self,
        cats: dict[str, float],
        lang: str | None,
        t0: float,
        role: str,
        notes: list[str],
        forced: str = "",
    ) -> Verdict:
        cfg = self.config
        flagged = sorted((c for c, s in cats.items() if s >= cfg.threshold_for(c)), key=lambda c: -cats[c])
        action = "allow"
        for c in flagged:
            if _SEVERITY[cfg.action_for(c)] > _SEVERITY[action]:
                action = cfg.action_for(c)
        if forced:  # fail-closed: a guard we were told to rely on could not answer
            action = "block"
        return Verdict(
            flagged=bool(flagged) or bool(forced),
            action=action,  # type: ignore[arg-type]
            categories={c: round(s, 4) for c, s in cats.items()},
            language=lang,
            latency_ms=_ms(t0),
            flagged_categories=flagged,
            role=role,
            notes=notes,
        )

    def refusal(self, language: str | None, category: str | None = None) -> str:
        return refusal_text(language, category)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
