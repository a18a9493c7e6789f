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
    epochs: int = field(default=10, metadata={"help": "SGD epochs"})
    alpha: float = field(default=1e-5, metadata={"help": "L2 regularisation strength"})


CONFIGS: dict[str, type] = {
    "train": TrainConfig,
    "train-semantic": SemanticTrainConfig,
    "check": SafetyConfig,
}


def _dev_report(rows: list[dict], cfg: TrainConfig) -> None:
    from serve.safety.classifier import HazardClassifier, TrainSettings
    from serve.safety.normalize import normalize

    groups = sorted({r["group"] for r in rows})
    held = set(random.Random(0).sample(groups, int(len(groups) * cfg.dev_fraction)))
    train = [r for r in rows if r["group"] not in held]
    dev = [r for r in rows if r["group"] in held]
    model = HazardClassifier.train(train, TrainSettings(alpha=cfg.alpha, epochs=cfg.epochs))
    preds = model.predict([normalize(r["text"]) for r in dev])
    print(f"dev: {len(dev)} rows from {len(held)} held-out phrase groups (threshold {cfg.threshold})")
    print(f"{'lang':<5} {'recall':>7} {'FPR':>7} {'n_harm':>7} {'n_benign':>8}")
    for lang in sorted({r["lang"] for r in dev}):
        hs = [
            p[0] >= cfg.threshold
            for r, p in zip(dev, preds, strict=True)
            if r["lang"] == lang and r["label"] == "harmful"
        ]
        bs = [
            p[0] >= cfg.threshold
            for r, p in zip(dev, preds, strict=True)
            if r["lang"] == lang and r["label"] == "benign"
        ]
        rec = sum(hs) / len(hs) if hs else float("nan")
        fpr = sum(bs) / len(bs) if bs else float("nan")
        print(f"{lang:<5} {rec:>7.3f} {fpr:>7.3f} {len(hs):>7} {len(bs):>8}")


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
