"""``crossling safety <verb>`` (also ``python -m safety <verb>``): build the seed, train, check.

- ``build-seed``: expand ``data/safety/source/*.yaml`` into ``data/safety/seed.jsonl``.
- ``train [CONFIG]``: train the built-in classifier and write ``data/safety/hazard_model.npz``;
  its harm threshold is calibrated on held-out phrase groups (``--report true`` prints them per language).
- ``train-semantic [CONFIG]``: embed the seed (multilingual-e5-small with
  ``configs/safety/encoder_train.yaml``, or an LM's hidden states), pick the layer and threshold on
  held-out seed groups, and write the heads (``data/safety/encoder_model.npz``; see
  ``safety.semantic_train``).
- ``train-guard [CONFIG]``: fine-tune the guard model (multilingual-e5-small's top layers + heads) on the
  seed, the written prompts and the public sets, calibrate its thresholds on held-out groups and write
  ``data/safety/guard_model.npz`` (``configs/safety/guard_train.yaml``; see ``safety.guard_train``).
- ``compare-guards --a A --b B``: score two guard files on the rows neither trained on, recall at
  benign FPR points with paired bootstrap intervals (``safety.guard_compare``).
- ``import-public``: copy XSafety, RTP-LX, XSTest and SIB-200 from ``../shared/safety_public`` into
  ``data/safety_public/`` with their licences (``safety.public_data``).
- ``check CONFIG TEXT...``: print the verdict for each text (policy from CONFIG).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from safety.classifier import TrainSettings, heldout_harm, save, seed_hash, threshold_at_fpr, train_calibrated
from safety.config import SafetyConfig
from safety.filter import SafetyFilter
from safety.guard_compare import CompareGuardsConfig, compare_guards
from safety.guard_train import GuardTrainConfig, train_guard
from safety.public_data import UPSTREAM_DIR, import_public
from safety.seed import SEED_PATH, build_seed, load_seed
from safety.semantic_train import SemanticTrainConfig, train_semantic


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


VERBS: dict[str, Verb] = {
    "build-seed": Verb(None, "expand data/safety/source/*.yaml into data/safety/seed.jsonl"),
    "train": Verb(TrainConfig, "train the built-in classifier"),
    "train-semantic": Verb(SemanticTrainConfig, "train the semantic stage's heads"),
    "train-guard": Verb(GuardTrainConfig, "fine-tune and calibrate the guard model"),
    "compare-guards": Verb(CompareGuardsConfig, "two guard files on the rows neither trained on", yaml=False),
    "import-public": Verb(None, "copy the public safety sets into data/safety_public/"),
    "check": Verb(SafetyConfig, "print verdicts for texts (policy from CONFIG)", args="TEXT..."),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling safety", VERBS, argv, description=__doc__)


def _dev_report(rows: list[dict], cfg: TrainConfig) -> None:
    """Recall/FPR per language on held-out phrase groups, at ``threshold`` and at the threshold that
    keeps held-out benign FPR at ``target_fpr`` (the one ``train`` stores in the model)."""
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


def _settings(cfg: TrainConfig) -> TrainSettings:
    return TrainSettings(alpha=cfg.alpha, epochs=cfg.epochs, target_fpr=cfg.target_fpr,
                         dev_fraction=cfg.dev_fraction)  # fmt: skip


def _train(cfg: TrainConfig) -> int:
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
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    if cli.verb == "build-seed":
        rows = build_seed()
        print(f"wrote {len(rows)} rows to {SEED_PATH}")
        return 0
    if cli.verb == "train":
        return _train(cli.config)
    if cli.verb == "train-guard":
        train_guard(cli.config, command=cli.command)
        return 0
    if cli.verb == "compare-guards":
        compare_guards(cli.config)
        return 0
    if cli.verb == "import-public":
        counts = import_public(UPSTREAM_DIR)
        print("imported " + ", ".join(f"{k}: {v} rows" for k, v in counts.items()))
        return 0
    if cli.verb == "train-semantic":
        train_semantic(cli.config)
        return 0
    safety = SafetyFilter(cli.config)
    for text in cli.args:
        v = safety.check(text)
        print(json.dumps({"text": text, **v.to_dict()}, ensure_ascii=False))
        if v.blocked:
            print("  refusal:", safety.refusal(v.language, v.top_category), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
