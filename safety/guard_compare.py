"""Compare two guard files on the rows neither trained on: ``crossling safety compare-guards --a A --b B``.

Is a retrained guard (new data, other settings) better than the one it would replace? Each file
records its training config and how it split the groups: a hash of the group and the seed
(``safety.guard_train.SPLIT``), or, for the shipped file of 2026-12-05, which drew its split at
random, the list of its held-out groups. So the rows each file trained on can be rebuilt from
today's data; a group a file never saw counts as trained on, the safe side. Both
files are scored on the held-out rows that neither trained on; chatter pairs are left out, because
they are made of other rows' texts. Recall is read at each benign FPR of *those* rows, not at the
files' own calibrated thresholds, which are not comparable. Each point gets a paired bootstrap 95 %
interval of ``b - a``, with the rows resampled. MultiJail and the benign evaluation sets are never
read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossling.errors import ConfigError
from safety.guard_data import training_rows
from safety.guard_model import GuardModel, read_meta
from safety.guard_train import SPLIT, GuardTrainConfig, data_args, split_rows, threshold_at


@dataclass
class CompareGuardsConfig:
    a: str = field(default="data/safety/guard_model.npz", metadata={"help": "guard file: the baseline"})
    b: str = field(default="", metadata={"help": "guard file compared with it"})
    points: list[float] = field(
        default_factory=lambda: [0.005, 0.01, 0.02, 0.03, 0.05],
        metadata={"help": "benign FPRs (on the compared rows) at which recall is read"},
    )
    bootstrap: int = field(default=1000, metadata={"help": "paired bootstrap replicates (0: none)"})
    threads: int = field(default=0, metadata={"help": "torch threads for scoring (0: all cores)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})


Split = Callable[[list[dict]], tuple[list[int], list[int]]]  # rows -> (trained on, held out) indices


def hash_split(cfg: GuardTrainConfig) -> Split:
    """The split ``train-guard`` makes with ``cfg`` (calib and check together as held out)."""

    def split(rows: list[dict]) -> tuple[list[int], list[int]]:
        tr, cal, chk = split_rows(rows, cfg)
        return tr, cal + chk

    return split


def listed_split(held_out_groups: list[str]) -> Split:
    """A split by a list of held-out groups; a group not on it (one the file never saw) counts as
    trained on, the safe side."""
    held = set(held_out_groups)

    def split(rows: list[dict]) -> tuple[list[int], list[int]]:
        return ([i for i, r in enumerate(rows) if r["group"] not in held],
                [i for i, r in enumerate(rows) if r["group"] in held])  # fmt: skip

    return split


def file_split(path: str | Path) -> tuple[GuardTrainConfig, Split]:
    """The training config a guard file records, and its split rebuilt over any rows: by the hash rule
    (``split: hash``), or by the list of held-out groups the file records (``held_out_groups``: files
    from the earlier random draw, whose split a later data change cannot rebuild). Else ``ConfigError``."""
    info = read_meta(path).info
    known = {f.name for f in dataclasses.fields(GuardTrainConfig)}
    cfg = GuardTrainConfig(**{k: v for k, v in info["config"].items() if k in known})
    if info.get("split") == SPLIT:
        return cfg, hash_split(cfg)
    if "held_out_groups" in info:
        return cfg, listed_split(info["held_out_groups"])
    raise ConfigError(
        f"{path}: this guard file records neither a {SPLIT!r} split nor its held-out groups, so the "
        "rows it trained on cannot be rebuilt; retrain it with `crossling safety train-guard` and "
        "compare the retrain"
    )


def neither_trained(rows_a: list[dict], split_a: Split, rows_b: list[dict], split_b: Split) -> list[dict]:
    """Held-out rows of either file whose text neither file trained on (chatter left out), one per text."""
    trained: set[str] = set()
    held: dict[str, dict] = {}
    for rows, split in ((rows_a, split_a), (rows_b, split_b)):
        tr, ho = split(rows)
        trained.update(rows[i]["text"] for i in tr)
        for i in ho:
            held.setdefault(rows[i]["text"], rows[i])
    return [r for t, r in held.items() if t not in trained and r["source"] != "chatter"]


def recall_at(scores: np.ndarray, harmful: np.ndarray, fpr: float) -> float:
    """Recall of the harmful rows at the threshold that flags ``fpr`` of the benign rows."""
    return float(np.mean(scores[harmful] >= threshold_at(scores[~harmful], fpr)))


def compare_scores(a: np.ndarray, b: np.ndarray, harmful: np.ndarray, points, bootstrap: int = 1000,
                   seed: int = 0) -> dict:  # fmt: skip
    """Per FPR point: recall of a and b, and the paired bootstrap 95 % interval of b - a."""
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(a), len(a)) for _ in range(bootstrap)]
    out = {}
    for p in points:
        diffs = [recall_at(b[s], harmful[s], p) - recall_at(a[s], harmful[s], p) for s in samples]
        lo, hi = np.percentile(diffs, [2.5, 97.5]) if diffs else (float("nan"), float("nan"))
        out[p] = {
            "a": recall_at(a, harmful, p),
            "b": recall_at(b, harmful, p),
            "diff_ci": [float(lo), float(hi)],
        }
    return out


def _scores(path: str, texts: list[str], threads: int) -> np.ndarray:
    guard = GuardModel(path, threads=threads or os.cpu_count() or 1)
    out: list[float] = []
    for i in range(0, len(texts), 64):
        out += [harm for harm, _ in guard.score(texts[i : i + 64])]
    return np.array(out)


def compare_guards(cfg: CompareGuardsConfig) -> dict:
    if not cfg.b:
        raise ConfigError("compare-guards needs --b PATH (the guard file to compare with --a)")
    cfgs, splits = zip(*(file_split(p) for p in (cfg.a, cfg.b)), strict=True)
    built: dict[tuple, list[dict]] = {}  # the same data settings build the same rows: once
    rows = []
    for c in cfgs:
        key = data_args(c)
        if key not in built:
            built[key] = training_rows(*key)[0]
        rows.append(built[key])
    common = neither_trained(rows[0], splits[0], rows[1], splits[1])
    harmful = np.array([r["label"] == "harmful" for r in common])
    if harmful.all() or not harmful.any():
        raise ConfigError("the two files share no held-out rows of both labels: nothing to compare on")
    texts = [r["text"] for r in common]
    a, b = (_scores(p, texts, cfg.threads) for p in (cfg.a, cfg.b))
    result = compare_scores(a, b, harmful, cfg.points, cfg.bootstrap, cfg.seed)
    print(f"rows neither file trained on: {int(harmful.sum())} harmful, {int((~harmful).sum())} benign")
    print(f"{'benign FPR':>10}  {'recall a':>8}  {'recall b':>8}  b - a, 95 % interval")
    for p, r in result.items():
        lo, hi = r["diff_ci"]
        print(f"{p:>10g}  {r['a']:>8.3f}  {r['b']:>8.3f}  {r['b'] - r['a']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return {"rows": {"harmful": int(harmful.sum()), "benign": int((~harmful).sum())}, "points": result}
