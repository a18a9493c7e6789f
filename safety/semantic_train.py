"""Train the semantic stage's heads: encoder features of the seed -> MLP / logistic heads -> ``.npz``.

``crossling safety train-semantic configs/safety/encoder_train.yaml`` (multilingual-e5-small, the
shipped default) or ``configs/safety/semantic_train.yaml`` (Gemma 3 270M hidden states):

1. Texts: ``frames_per_group`` framings of every seed phrase group (all framings of one phrase are
   near-duplicates in embedding space), plus optional extra benign text (NTREX *train* sentences,
   GSM8K train questions; the same sources the n-gram classifier uses).
2. Features: the encoder's sentence vector, or mean-pooled hidden states of ``layers`` of an LM,
   extracted once and cached as an ``.npz`` under ``~/.cache/crossling/safety/`` keyed by the
   texts, model and layers.
3. Selection, on OUR data only: 20 % of the phrase groups (and of the extra benign text) are held
   out; for every layer a harm head is fitted on the rest, and the threshold is the one that keeps
   held-out benign FPR at ``target_fpr``. The layer with the best held-out recall there wins.
   MultiJail and the benign evaluation sets (``data/safety/benign_eval/``) are never read here.
4. The chosen layer's heads are refitted on everything and written with the threshold, the model
   name and the layer recorded in the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from safety.classifier import CACHE_DIR, TrainSettings, extra_benign
from safety.seed import held_out_groups, load_seed
from safety.semantic import SENTENCE_ENCODERS, SemanticModel, make_embedder, save_semantic

log = logging.getLogger(__name__)


@dataclass
class SemanticTrainConfig:
    seed_path: str = field(default="data/safety/seed.jsonl", metadata={"help": "training rows (JSONL)"})
    out_path: str = field(
        default="data/safety/semantic_model.npz", metadata={"help": "where to write the trained heads"}
    )
    model: str = field(
        default="gemma3-270m",
        metadata={
            "help": f"encoder: one of {SENTENCE_ENCODERS}, or an LM whose hidden states are the features"
        },
    )
    layers: list[int] = field(
        default_factory=lambda: [6, 9, 12, 18],
        metadata={"help": "candidate layers (index into output_hidden_states; 0 = embeddings)"},
    )
    max_tokens: int = field(default=32, metadata={"help": "truncate every text to this many tokens"})
    frames_per_group: int = field(default=1, metadata={"help": "framings kept per seed phrase group"})
    ntrex_per_language: int = field(default=20, metadata={"help": "NTREX train sentences per language"})
    gsm8k_questions: int = field(default=40, metadata={"help": "GSM8K train questions (benign)"})
    chatter: int = field(
        default=0,
        metadata={"help": "add this many harmful rows joined to a benign row of their language (label "
                  "harmful), and as many benign+benign pairs: a harmful request inside chatter "
                  "must not pool to harmless"},
    )  # fmt: skip
    dev_fraction: float = field(default=0.2, metadata={"help": "held-out share of groups for selection"})
    target_fpr: float = field(
        default=0.05, metadata={"help": "threshold = the score that keeps held-out benign FPR at this"}
    )
    head: str = field(
        default="logistic", metadata={"help": "harm head: logistic (linear) or mlp (one hidden ReLU layer)"}
    )
    hidden: int = field(default=256, metadata={"help": "hidden units of the mlp harm head"})
    alpha: float = field(default=1e-3, metadata={"help": "L2 strength of the mlp harm head"})
    C: float = field(default=0.5, metadata={"help": "inverse L2 strength of the logistic regressions"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass during extraction"})
    seed: int = field(default=0, metadata={"help": "random seed (framings, split)"})


def training_texts(cfg: SemanticTrainConfig) -> list[dict]:
    """Rows {text, lang, label, category, group}: sampled seed framings + extra benign text."""
    rng = random.Random(cfg.seed)
    by_group: dict[str, list[dict]] = {}
    for r in load_seed(cfg.seed_path):
        by_group.setdefault(r["group"], []).append(r)
    rows = []
    for g in sorted(by_group):
        for r in rng.sample(by_group[g], min(cfg.frames_per_group, len(by_group[g]))):
            rows.append({"text": r["text"], "lang": r["lang"], "label": r["label"],
                         "category": r.get("category") or "", "group": g, "source": "seed"})  # fmt: skip
    extra = extra_benign(TrainSettings(ntrex_per_language=cfg.ntrex_per_language,
                                       gsm8k_questions=cfg.gsm8k_questions, seed=cfg.seed))  # fmt: skip
    for i, (text, lang) in enumerate(extra):
        rows.append({"text": text, "lang": lang, "label": "benign", "category": "",
                     "group": f"extra-{i}", "source": "extra"})  # fmt: skip
    return rows + chatter_rows(rows, cfg.chatter, rng)


def chatter_rows(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """``n`` harmful rows each joined (before or after, at random) to a benign seed row of the same
    language, labelled harmful, plus ``n`` benign+benign pairs. A pair keeps the group of its
    harmful (or first) row, so the held-out split never sees a phrase it trained on."""
    benign: dict[str, list[dict]] = {}
    for r in rows:
        if r["label"] == "benign" and r["source"] == "seed":
            benign.setdefault(r["lang"], []).append(r)
    harmful = [r for r in rows if r["label"] == "harmful" and r["lang"] in benign]
    out = []
    for i in range(2 * n):
        a = rng.choice(harmful) if i < n else rng.choice(rng.choice(list(benign.values())))
        b = rng.choice(benign[a["lang"]])
        text = f"{a['text']} {b['text']}" if rng.random() < 0.5 else f"{b['text']} {a['text']}"
        out.append({**a, "text": text, "source": "chatter"})
    return out


def extract(rows: list[dict], cfg: SemanticTrainConfig, cache_dir: Path | None = CACHE_DIR) -> np.ndarray:
    """(n, len(layers), hidden) float32 features, from the cache when the same texts were embedded."""
    key = hashlib.sha256(
        json.dumps([cfg.model, cfg.layers, cfg.max_tokens, [r["text"] for r in rows]]).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir) / f"semantic-feats-{key}.npz" if cache_dir else None
    if path and path.is_file():
        log.warning("semantic features from cache %s", path)
        return np.load(path)["feats"].astype(np.float32)
    emb = make_embedder(cfg.model, cfg.layers, cfg.max_tokens)
    texts = [r["text"] for r in rows]
    if cfg.model in SENTENCE_ENCODERS:  # the stage embeds long texts by sentence windows of this size
        texts = [t[: emb.max_chars] for t in texts]
    # sorted by length so a batch pads little: padding is most of the cost otherwise
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    feats = None
    for s in tqdm(range(0, len(order), cfg.batch_size), desc="semantic features", unit="batch"):
        idx = order[s : s + cfg.batch_size]
        out = emb.embed([texts[i] for i in idx])
        if feats is None:
            feats = np.zeros((len(texts), *out.shape[1:]), dtype=np.float32)
        feats[idx] = out
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, feats=feats.astype(np.float16))
    return feats


def fit_heads(x: np.ndarray, rows: list[dict], cfg: SemanticTrainConfig) -> dict:
    """Standardise, then a binary harm head (balanced LR, or an MLP) and a multinomial category LR
    (harmful rows only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    y = np.array([r["label"] == "harmful" for r in rows])
    if cfg.head == "mlp":
        harm = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), alpha=cfg.alpha, max_iter=200,
                             early_stopping=True, random_state=cfg.seed).fit(z, y)  # fmt: skip
    elif cfg.head == "logistic":
        harm = LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=2000).fit(z, y)
    else:
        raise ValueError(f"head must be logistic or mlp, not {cfg.head!r}")
    cats = np.array([r["category"] for r in rows])
    cat = LogisticRegression(C=cfg.C, max_iter=2000).fit(z[y], cats[y])
    return {"mean": mean, "scale": scale, "harm": harm, "cat": cat}


def harm_layers(harm) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The fitted harm head as (weights, biases) per layer, as ``SemanticModel`` evaluates it."""
    if hasattr(harm, "coefs_"):  # MLPClassifier: ReLU hidden layers, logistic output
        return [w.astype(np.float32) for w in harm.coefs_], [b.astype(np.float32) for b in harm.intercepts_]
    return [harm.coef_.T.astype(np.float32)], [harm.intercept_.astype(np.float32)]


def _harm_scores(heads: dict, x: np.ndarray) -> np.ndarray:
    return heads["harm"].predict_proba((x - heads["mean"]) / heads["scale"])[:, 1]


def split(rows: list[dict], cfg: SemanticTrainConfig) -> np.ndarray:
    """Boolean dev mask: whole phrase groups held out (all framings of a phrase on one side)."""
    held = held_out_groups(rows, cfg.dev_fraction, seed=cfg.seed + 1)
    return np.array([r["group"] in held for r in rows])


def select(feats: np.ndarray, rows: list[dict], cfg: SemanticTrainConfig) -> tuple[int, float, list[dict]]:
    """Per layer on the held-out split: the threshold at ``target_fpr`` and the recall there."""
    dev = split(rows, cfg)
    y = np.array([r["label"] == "harmful" for r in rows])
    seed_benign = np.array([r["source"] == "seed" and r["label"] == "benign" for r in rows])
    report = []
    for li, layer in enumerate(cfg.layers):
        heads = fit_heads(feats[~dev, li], [r for r, d in zip(rows, dev, strict=True) if not d], cfg)
        s = _harm_scores(heads, feats[dev, li])
        yd, lookalike = y[dev], seed_benign[dev]
        thr = float(np.quantile(s[~yd], 1.0 - cfg.target_fpr))
        report.append({
            "layer": layer, "threshold": thr, "recall": float((s[yd] >= thr).mean()),
            "fpr": float((s[~yd] >= thr).mean()), "fpr_lookalike": float((s[lookalike] >= thr).mean()),
            "fpr_extra": float((s[~yd & ~lookalike] >= thr).mean()) if (~yd & ~lookalike).any() else None,
            "recall_at_0.5": float((s[yd] >= 0.5).mean()), "fpr_at_0.5": float((s[~yd] >= 0.5).mean()),
            "per_lang": {lang: float((s[yd & (langs == lang)] >= thr).mean())
                         for langs in [np.array([r["lang"] for r in rows])[dev]]
                         for lang in sorted(set(langs[yd]))},
        })  # fmt: skip
    best = max(report, key=lambda r: r["recall"])
    return best["layer"], best["threshold"], report


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def train_semantic(cfg: SemanticTrainConfig) -> dict:
    t0 = time.perf_counter()
    rows = training_texts(cfg)
    n_h = sum(r["label"] == "harmful" for r in rows)
    print(f"semantic: {len(rows)} texts ({n_h} harmful, {len(rows) - n_h} benign), layers {cfg.layers}")
    # cached in two parts: changing `chatter` does not re-embed the seed
    base = [r for r in rows if r["source"] != "chatter"]
    feats = np.concatenate([extract(part, cfg) for part in (base, rows[len(base) :]) if part])
    layer, thr, report = select(feats, rows, cfg)
    print(f"held-out split ({cfg.dev_fraction:.0%} of groups), threshold at benign FPR {cfg.target_fpr:.0%}:")
    print(f"{'layer':>5} {'thr':>6} {'recall':>7} {'FPR':>6} {'FPR seed benign':>15} {'FPR other':>13}"
          f" {'rec@0.5':>8} {'FPR@0.5':>8}")  # fmt: skip
    for r in report:
        print(f"{r['layer']:>5} {r['threshold']:>6.3f} {r['recall']:>7.3f} {r['fpr']:>6.3f} "
              f"{r['fpr_lookalike']:>15.3f} {_num(r['fpr_extra']):>13} {r['recall_at_0.5']:>8.3f} "
              f"{r['fpr_at_0.5']:>8.3f}")  # fmt: skip
    best = next(r for r in report if r["layer"] == layer)
    print("chosen layer", layer, "held-out recall per language:",
          " ".join(f"{k}={v:.2f}" for k, v in best["per_lang"].items()))  # fmt: skip
    li = cfg.layers.index(layer)
    heads = fit_heads(feats[:, li], rows, cfg)
    weights, biases = harm_layers(heads["harm"])
    model = SemanticModel(
        model=cfg.model, layer=layer, max_tokens=cfg.max_tokens,
        mean=heads["mean"], scale=heads["scale"],
        harm_weights=weights, harm_biases=biases,
        cat_coef=heads["cat"].coef_.T.copy(), cat_bias=heads["cat"].intercept_,
        categories=[str(c) for c in heads["cat"].classes_], threshold=thr,
        meta={"selection": report, "n_texts": len(rows), "n_harmful": n_h, "C": cfg.C, "head": cfg.head,
              "hidden": cfg.hidden if cfg.head == "mlp" else 0,
              "seed_sha256": hashlib.sha256(Path(cfg.seed_path).read_bytes()).hexdigest()[:16]},
    )  # fmt: skip
    save_semantic(model, cfg.out_path)
    print(f"wrote {cfg.out_path} (layer {layer}, threshold {thr:.3f}) in {time.perf_counter() - t0:.0f} s")
    return {"layer": layer, "threshold": thr, "report": report}
