"""``crossling safety <verb>`` (also ``python -m serve.safety <verb>``): build the seed, train, check.

- ``build-seed``: expand ``data/safety/source/*.yaml`` into ``data/safety/seed.jsonl``.
- ``train [CONFIG]``: train the built-in classifier and write ``data/safety/hazard_model.npz``;
  with ``--dev_fraction 0.2`` first reports recall/FPR per language on held-out phrase groups.
- ``train-semantic [CONFIG]``: extract LM features of the seed, pick the layer and threshold on
  held-out seed groups, and write ``data/safety/semantic_model.npz`` (``serve.safety.semantic_train``).
- ``check CONFIG TEXT...``: print the verdict for each text (policy from CONFIG).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field

from crossling.config import add_config_arguments, load_config
from serve.safety.config import SafetyConfig
from serve.safety.semantic_train import SemanticTrainConfig


@dataclass
class TrainConfig:
    seed_path: str = field(default="data/safety/seed.jsonl", metadata={"help": "training rows (JSONL)"})
    model_path: str = field(
        default="data/safety/hazard_model.npz", metadata={"help": "where to write the model"}
    )
    dev_fraction: float = field(
        default=0.0, metadata={"help": "hold out this fraction of phrase groups first and report on them"}
    )
    threshold: float = field(default=0.5, metadata={"help": "harm threshold used for the dev report"})
    target_fpr: float = field(
        default=0.05, metadata={"help": "dev report: also show the threshold giving this held-out benign FPR"}
    )
    epochs: int = field(default=10, metadata={"help": "SGD epochs"})
    alpha: float = field(default=1e-5, metadata={"help": "L2 regularisation strength"})


CONFIGS: dict[str, type] = {
    "train": TrainConfig,
    "train-semantic": SemanticTrainConfig,
    "check": SafetyConfig,
}


def _dev_report(rows: list[dict], cfg: TrainConfig) -> None:
    """Train on all but ``dev_fraction`` of the phrase groups; report per language on the rest, at
    ``threshold`` and at the threshold that keeps held-out benign FPR at ``target_fpr`` (the way to
    pick a policy threshold without looking at any evaluation set)."""
    from serve.safety.classifier import HazardClassifier, TrainSettings
    from serve.safety.normalize import normalize

    groups = sorted({r["group"] for r in rows})
    held = set(random.Random(0).sample(groups, int(len(groups) * cfg.dev_fraction)))
    train = [r for r in rows if r["group"] not in held]
    dev = [r for r in rows if r["group"] in held]
    model = HazardClassifier.train(train, TrainSettings(alpha=cfg.alpha, epochs=cfg.epochs))
    harm = [p[0] for p in model.predict([normalize(r["text"]) for r in dev])]
    benign = sorted(h for r, h in zip(dev, harm, strict=True) if r["label"] == "benign")
    calibrated = benign[min(len(benign) - 1, int(len(benign) * (1 - cfg.target_fpr)))] + 1e-6
    print(f"dev: {len(dev)} rows from {len(held)} held-out phrase groups")
    print(f"threshold for {cfg.target_fpr:.0%} held-out benign FPR: {calibrated:.3f}")
    print(
        f"{'lang':<5} {'n_harm':>7} {'n_benign':>8} | @{cfg.threshold:<5.2f} recall  FPR | @{calibrated:<5.3f} recall  FPR"
    )
    for lang in sorted({r["lang"] for r in dev}) + ["all"]:
        h = [
            x
            for r, x in zip(dev, harm, strict=True)
            if lang in ("all", r["lang"]) and r["label"] == "harmful"
        ]
        b = [
            x for r, x in zip(dev, harm, strict=True) if lang in ("all", r["lang"]) and r["label"] == "benign"
        ]
        cells = []
        for t in (cfg.threshold, calibrated):
            rec = sum(x >= t for x in h) / len(h) if h else float("nan")
            fpr = sum(x >= t for x in b) / len(b) if b else float("nan")
            cells.append(f"{rec:>13.3f} {fpr:>4.2f}")
        print(f"{lang:<5} {len(h):>7} {len(b):>8} | {cells[0]} | {cells[1]}")


def _train(cfg: TrainConfig) -> int:
    from serve.safety.classifier import HazardClassifier, TrainSettings, save, seed_hash
    from serve.safety.seed import load_seed

    rows = load_seed(cfg.seed_path)
    if cfg.dev_fraction > 0:
        _dev_report(rows, cfg)
    settings = TrainSettings(alpha=cfg.alpha, epochs=cfg.epochs)
    t0 = time.perf_counter()
    model = HazardClassifier.train(rows, settings)
    save(model, cfg.model_path, seed_hash(cfg.seed_path, settings))
    print(f"trained on {len(rows)} seed rows in {time.perf_counter() - t0:.1f} s -> {cfg.model_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossling safety", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("build-seed", help="expand data/safety/source/*.yaml into data/safety/seed.jsonl")
    add_config_arguments(sub.add_parser("train", help="train the built-in classifier"), TrainConfig)
    add_config_arguments(
        sub.add_parser("train-semantic", help="train the semantic stage's heads"), SemanticTrainConfig
    )
    p_check = sub.add_parser("check", help="print verdicts for texts")
    p_check.add_argument("config", help="safety policy YAML (configs/safety/default.yaml)")
    p_check.add_argument("texts", nargs="+")
    args, rest = parser.parse_known_args(argv)
    if args.verb == "build-seed":
        from serve.safety.seed import SEED_PATH, build_seed

        rows = build_seed()
        print(f"wrote {len(rows)} rows to {SEED_PATH}")
        return 0
    if args.verb == "train":
        return _train(load_config(TrainConfig, args.config, rest))
    if args.verb == "train-semantic":
        from serve.safety.semantic_train import train_semantic

        train_semantic(load_config(SemanticTrainConfig, args.config, rest))
        return 0
    from serve.safety.filter import SafetyFilter

    safety = SafetyFilter.from_config(args.config, rest)
    for text in args.texts:
        v = safety.check(text)
        print(json.dumps({"text": text, **v.to_dict()}, ensure_ascii=False))
        if v.blocked:
            print("  refusal:", safety.refusal(v.language, v.top_category), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
