"""``crossling safety <verb>`` (also ``python -m safety <verb>``): build the seed, train, check.

- ``build-seed``: expand ``data/safety/source/*.yaml`` into ``data/safety/seed.jsonl``.
- ``train [CONFIG]``: train the built-in classifier and write ``data/safety/hazard_model.npz``;
  its harm threshold is calibrated on held-out phrase groups (``--report true`` prints them per language).
- ``train-semantic [CONFIG]``: embed the seed (multilingual-e5-small with
  ``configs/safety/encoder_train.yaml``, or an LM's hidden states), pick the layer and threshold on
  held-out seed groups, and write the heads (``data/safety/encoder_model.npz``; see
  ``safety.semantic_train``).
- ``check CONFIG TEXT...``: print the verdict for each text (policy from CONFIG).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

from crossling.config import add_config_arguments, load_config
from safety.config import SafetyConfig
from safety.semantic_train import SemanticTrainConfig


@dataclass
class TrainConfig:
    seed_path: str = field(default="data/safety/seed.jsonl", metadata={"help": "training rows (JSONL)"})
    model_path: str = field(
        default="data/safety/hazard_model.npz", metadata={"help": "where to write the model"}
    )
    dev_fraction: float = field(
        default=0.2,
        metadata={
            "help": "share of phrase groups held out to calibrate the harm threshold (0: no calibration)"
        },
    )
    target_fpr: float = field(
        default=0.05,
        metadata={"help": "calibrated threshold = the harm score giving this held-out benign FPR (0: off)"},
    )
    report: bool = field(
        default=False, metadata={"help": "print recall/FPR per language on the held-out groups"}
    )
    threshold: float = field(default=0.5, metadata={"help": "harm threshold also shown in the report"})
    epochs: int = field(default=10, metadata={"help": "SGD epochs"})
    alpha: float = field(default=1e-5, metadata={"help": "L2 regularisation strength"})


CONFIGS: dict[str, type] = {
    "train": TrainConfig,
    "train-semantic": SemanticTrainConfig,
    "check": SafetyConfig,
}


def _dev_report(rows: list[dict], cfg: TrainConfig) -> None:
    """Recall/FPR per language on held-out phrase groups, at ``threshold`` and at the threshold that
    keeps held-out benign FPR at ``target_fpr`` (the one ``train`` stores in the model)."""
    from safety.classifier import heldout_harm, threshold_at_fpr

    dev, harm = heldout_harm(rows, _settings(cfg))
    calibrated = threshold_at_fpr([h for r, h in zip(dev, harm, strict=True) if r["label"] == "benign"],
                                  cfg.target_fpr)  # fmt: skip
    print(f"dev: {len(dev)} rows from {len({r['group'] for r in dev})} held-out phrase groups")
    print(f"threshold for {cfg.target_fpr:.0%} held-out benign FPR: {calibrated:.3f}")
    print(
        f"{'lang':<5} {'n_harm':>7} {'n_benign':>8} | @{cfg.threshold:<5.2f} recall  FPR | @{calibrated:<5.3f} recall  FPR"
    )
    for lang in sorted({r["lang"] for r in dev}) + ["all"]:
        mine = [(r["label"], x) for r, x in zip(dev, harm, strict=True) if lang in ("all", r["lang"])]
        h = [x for label, x in mine if label == "harmful"]
        b = [x for label, x in mine if label == "benign"]
        cells = []
        for t in (cfg.threshold, calibrated):
            rec = sum(x >= t for x in h) / len(h) if h else float("nan")
            fpr = sum(x >= t for x in b) / len(b) if b else float("nan")
            cells.append(f"{rec:>13.3f} {fpr:>4.2f}")
        print(f"{lang:<5} {len(h):>7} {len(b):>8} | {cells[0]} | {cells[1]}")


def _settings(cfg: TrainConfig):
    from safety.classifier import TrainSettings

    return TrainSettings(alpha=cfg.alpha, epochs=cfg.epochs, target_fpr=cfg.target_fpr,
                         dev_fraction=cfg.dev_fraction)  # fmt: skip


def _train(cfg: TrainConfig) -> int:
    from safety.classifier import save, seed_hash, train_calibrated
    from safety.seed import load_seed

    rows = load_seed(cfg.seed_path)
    if cfg.report and cfg.dev_fraction > 0:
        _dev_report(rows, cfg)
    settings = _settings(cfg)
    t0 = time.perf_counter()
    model = train_calibrated(rows, settings)
    save(model, cfg.model_path, seed_hash(cfg.seed_path, settings))
    print(f"trained on {len(rows)} seed rows in {time.perf_counter() - t0:.1f} s -> {cfg.model_path} "
          f"(harm threshold {model.threshold:.3f} = {cfg.target_fpr:.0%} held-out benign FPR)")  # fmt: skip
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
        from safety.seed import SEED_PATH, build_seed

        rows = build_seed()
        print(f"wrote {len(rows)} rows to {SEED_PATH}")
        return 0
    if args.verb == "train":
        return _train(load_config(TrainConfig, args.config, rest))
    if args.verb == "train-semantic":
        from safety.semantic_train import train_semantic

        train_semantic(load_config(SemanticTrainConfig, args.config, rest))
        return 0
    from safety.filter import SafetyFilter

    safety = SafetyFilter.from_config(args.config, rest)
    for text in args.texts:
        v = safety.check(text)
        print(json.dumps({"text": text, **v.to_dict()}, ensure_ascii=False))
        if v.blocked:
            print("  refusal:", safety.refusal(v.language, v.top_category), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
