"""The DPO and KTO recipes (``crossling align dpo|kto CONFIG``): reward-transfer data, then TRL.

``data() → setup() → train()``:
1. ``data``: target-language prompts (NTREX train documents by default) → ``n`` samples each from the
   SFT policy → scores from the reward model trained in the source language (``scored.jsonl``,
   reused on rerun) → DPO pairs (best vs worst, ``min_margin``) or KTO labels (threshold/quantiles),
   written to ``pairs.jsonl`` / ``kto.jsonl`` in the run folder.
2. ``setup``: the SFT adapter continues training under QLoRA; TRL copies it into a frozen ``ref``
   adapter that serves as the reference (see ``align.training``). TRL field names throughout (``beta``, ``loss_type``,
   ``max_length``, ``precompute_ref_log_probs``).
3. ``train``: TRL ``DPOTrainer`` / ``KTOTrainer``; metrics.jsonl, TensorBoard, atomic checkpoints,
   ``adapter/``, ``loss.png`` and ``summary.json`` like sft.
"""

from __future__ import annotations

import time
from pathlib import Path

from align import scoring, training
from align.config import DPORunConfig, KTORunConfig
from align.reward import reward_model_parts
from crossling.device import fp32_trainable
from crossling.errors import DataError
from sft.runs import AtomicCheckpointMixin


class PreferenceRecipe:
    def __init__(self, config: DPORunConfig | KTORunConfig, method: str, command: str | None = None):
        if method not in ("dpo", "kto"):
            raise ValueError(f"method must be dpo or kto, got {method!r}")
        self.config, self.method, self.command = config, method, command
        self.run_dir = Path(config.output_dir)
        self.trainer = None
        self.resume: str | None = None  # the checkpoint this run continues (set by data)
        self.rows: list[dict] = []
        self.summary: dict = {"method": method, "target_languages": config.target_languages}

    def data(self, scorer=None) -> list[dict]:
        cfg = self.config
        training.check_adapter(
            cfg.adapter, "adapter", "Train it first (`make train-sft`) or set adapter: null."
        )
        if scorer is None:
            reward_model_parts(cfg.reward_model)  # fail before sampling (minutes), not after
        self.run_dir, self.resume = training.start_run(cfg, self.command, self.method)
        t0 = time.time()
        prompts = scoring.target_prompts(
            cfg.prompts, cfg.target_languages, cfg.prompts_per_language, "train", cfg.seed,
            cfg.instruction_languages,
        )  # fmt: skip
        scored = scoring.sample_and_score(prompts, cfg, self.run_dir / "scored.jsonl", scorer=scorer)
        self.summary["sample_and_score_seconds"] = round(time.time() - t0, 1)
        scored = scoring.with_reference(scored, cfg.reference_weight)  # unchanged at weight 0
        if self.method == "dpo":
            self.rows, stats = scoring.dpo_pairs(scored, cfg.min_margin)
        else:
            self.rows, stats = scoring.kto_examples(
                scored, cfg.threshold, cfg.desirable_quantile, cfg.undesirable_quantile
            )
        if cfg.reference_examples:
            extra = scoring.reference_examples(scored, self.method)
            self.rows += extra
            stats["reference_examples"] = len(extra)
        if self.method == "kto" and cfg.safety_examples:
            extra = safety_examples(cfg)
            self.rows += extra
            stats["safety_examples"] = len(extra)
        if self.method == "kto":  # the labels of every row, added ones included
            stats["desirable"] = sum(r["label"] for r in self.rows)
            stats["undesirable"] = len(self.rows) - stats["desirable"]
        scoring.write_jsonl(
            self.rows, self.run_dir / ("pairs.jsonl" if self.method == "dpo" else "kto.jsonl")
        )
        if self.method == "dpo" and not self.rows:
            raise DataError(
                f"no DPO pair reached min_margin={cfg.min_margin} ({stats}); lower min_margin or raise n"
            )
        if self.method == "kto" and (stats["desirable"] == 0 or stats["undesirable"] == 0):
            raise DataError(f"KTO needs desirable and undesirable examples, got {stats}; adjust threshold")
        self.summary["data"] = stats
        training.say(f"{self.method} data: " + ", ".join(f"{k} {v}" for k, v in stats.items() if k != "cuts"))
        return self.rows

    def trl_args(self):
        cfg = self.config
        common = training.training_arguments(cfg, self.run_dir)
        if self.method == "dpo":
            from trl import DPOConfig

            return DPOConfig(
                **common,
                beta=cfg.beta,
                loss_type=cfg.loss_type,
                loss_weights=cfg.loss_weights,
                precompute_ref_log_probs=cfg.precompute_ref_log_probs,
            )
        from trl import KTOConfig

        return KTOConfig(
            **common,
            beta=cfg.beta,
            loss_type=cfg.loss_type,
            desirable_weight=cfg.desirable_weight,
            undesirable_weight=cfg.undesirable_weight,
            precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        )

    def setup(self) -> None:
        import datasets

        if not self.rows:
            raise DataError("no training rows: call data() first")
        keys = ["prompt", "chosen", "rejected"] if self.method == "dpo" else ["prompt", "completion", "label"]
        train_ds = datasets.Dataset.from_list([{k: r[k] for k in keys} for r in self.rows])
        t0 = time.time()
        model, tokenizer = training.load_policy(self.config)
        training.say(f"loaded policy {self.config.adapter or self.config.model} in {time.time() - t0:.1f}s")
        if self.method == "dpo":
            from trl import DPOTrainer as Base
        else:
            from trl import KTOTrainer as Base

        class Trainer(AtomicCheckpointMixin, Base):
            pass

        training.score_labelled_positions_only()  # the completion's positions, not the prompt's
        self.trainer = Trainer(
            model=model, args=self.trl_args(), train_dataset=train_ds, processing_class=tokenizer
        )
        fp32_trainable(self.trainer.model)
        training.add_callbacks(self.trainer, self.run_dir, self.config.report_to)

    def train(self) -> Path:
        cfg = self.config
        title = f"{self.method.upper()} on {cfg.adapter or cfg.model} ({', '.join(cfg.target_languages)})"
        return training.train_and_save(self.trainer, self.run_dir, title, self.summary, self.resume)


def safety_examples(cfg: KTORunConfig) -> list[dict]:
    """``cfg.safety_examples`` Self-Defence rows per safety language (else target language) from ``cfg.safety_seed``."""
    from align.preference_data import safety_kto_rows
    from data_recipes.recipes.safety import read_seed
    from safety.refusals import refusal_text

    if not Path(cfg.safety_seed).is_file():
        raise DataError(
            f"safety_examples: {cfg.safety_seed} not found (set safety_seed, or safety_examples: 0)"
        )
    languages = cfg.safety_languages or cfg.target_languages
    rows = safety_kto_rows(
        read_seed(cfg.safety_seed), refusal_text, languages, cfg.safety_examples, seed=cfg.seed
    )
    if not rows:
        raise DataError(f"safety_examples: {cfg.safety_seed} has no rows in {', '.join(languages)}")
    return rows


def run(config: DPORunConfig | KTORunConfig, method: str, command: str | None = None) -> dict:
    recipe = PreferenceRecipe(config, method, command)
    recipe.data()
    recipe.setup()
    recipe.train()
    return recipe.summary
