"""The optional *semantic* safety stage: a multilingual LM's pooled hidden states + logistic regression.

Why: the built-in n-gram classifier (``serve.safety.classifier``) recognises phrasings close to its
seed vocabulary; a harmful request worded differently, or in a language where the seed is thin,
shares few character n-grams with it. Mean-pooled hidden states of a multilingual LM (the embedded
Gemma 3 270M by default) place paraphrases and translations near each other, so a linear model on
them generalises across wording and language better than surface n-grams.

What is here: ``Embedder`` (load an LM, mean-pool one or more layers' hidden states over the real
tokens, truncated to ``max_tokens``), ``SemanticModel`` (per-text harm probability and per-category
scores from two logistic regressions on those features) and its ``save``/``load`` as a small
``.npz`` that records the LM and the layer it was trained on. Training and layer/threshold
selection live in ``serve.safety.semantic_train``. Policy (what to block, when to run this stage)
lives in ``serve.safety.filter``; this module knows nothing about it.
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
from serve.safety.categories import CATEGORY_IDS
from serve.safety.seed import REPO

log = logging.getLogger(__name__)

SEMANTIC_PATH = REPO / "data" / "safety" / "semantic_model.npz"
FORMAT_VERSION = 1


class Embedder:
    """Mean-pooled hidden states of a causal LM, on CPU in float32 (the fast dtype there).

    ``layers`` are indices into ``output_hidden_states`` (0 = embeddings, ``n_layers`` = last).
    Padding is masked out of the mean, and so is ``<bos>``: it is identical for every text and its
    hidden state is huge in Gemma, so it would dominate the average.
    """

    def __init__(self, model: str, layers: Sequence[int], max_tokens: int = 64, threads: int | None = None):
        import torch

        from crossling.models import load_causal_lm, load_tokenizer, resolve_model

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
    """Two linear models on one layer's pooled features: harm (binary) and category (multiclass)."""

    model: str  # the LM name as configured (e.g. gemma3-270m)
    layer: int
    max_tokens: int
    mean: np.ndarray  # feature standardisation, (hidden,)
    scale: np.ndarray
    harm_coef: np.ndarray  # (hidden,)
    harm_bias: float
    cat_coef: np.ndarray  # (hidden, n_categories)
    cat_bias: np.ndarray
    categories: list[str]
    threshold: float  # the harm threshold chosen on held-out seed data (see semantic_train)
    meta: dict

    def predict_features(self, feats: np.ndarray) -> list[tuple[float, dict[str, float]]]:
        """feats: (n, hidden) pooled states of ``self.layer`` -> [(harm, {category: score})]."""
        z = (feats.astype(np.float32) - self.mean) / self.scale
        harm = 1.0 / (1.0 + np.exp(-np.clip(z @ self.harm_coef + self.harm_bias, -30, 30)))
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
        harm_coef=m.harm_coef.astype(np.float32),
        harm_bias=np.float32(m.harm_bias),
        cat_coef=m.cat_coef.astype(np.float32),
        cat_bias=m.cat_bias.astype(np.float32),
        categories=np.array(m.categories),
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(path)


def load_semantic(path: str | Path) -> SemanticModel:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: semantic model format {meta.get('format')}, expected {FORMAT_VERSION}")
    return SemanticModel(
        model=meta["model"],
        layer=int(meta["layer"]),
        max_tokens=int(meta["max_tokens"]),
        mean=z["mean"],
        scale=z["scale"],
        harm_coef=z["harm_coef"],
        harm_bias=float(z["harm_bias"]),
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
    """A loaded LM + trained heads: ``score(text) -> (harm, {category: score on the policy's scale})``."""

    def __init__(self, head: SemanticModel, threshold: float | None = None, threads: int | None = None):
        self.head = head
        self.threshold = threshold if threshold is not None else head.threshold
        self.embedder = Embedder(head.model, [head.layer], head.max_tokens, threads=threads or None)

    def raw_score(self, text: str) -> tuple[float, dict[str, float]]:
        """The heads' own harm probability and category scores (top category == harm)."""
        feats = self.embedder.embed([text])[:, 0, :]
        return self.head.predict_features(feats)[0]

    def score(self, text: str, policy_threshold: float = 0.5) -> tuple[float, dict[str, float]]:
        """(raw harm probability, category scores rescaled so ``self.threshold`` -> policy threshold)."""
        harm, cats = self.raw_score(text)
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
    path = Path(cfg.model_path) if cfg.model_path else SEMANTIC_PATH
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
