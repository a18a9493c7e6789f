"""The reward-model recipe (``crossling align reward CONFIG``) and the scorer every align step uses.

``RewardRecipe``: TRL's ``RewardTrainer`` (Bradley-Terry loss) over a sequence-classification head
(``num_labels=1``) on the base model, QLoRA as in sft, trained on preferences in *one* source language
(default English). After training it writes the transfer report (``align.transfer``): accuracy on
held-out pairs built the same way in every language. ``RewardScorer`` loads a trained reward model and
scores (prompt, completion) chats exactly as TRL tokenized them in training.

Not here: the pairs themselves (``align.preference_data``) or what is done with scores
(``align.scoring``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from align import preference_data, training, transfer
from align.config import RewardRunConfig
from crossling.adapters import adapter_base_model, is_adapter, require_adapter
from crossling.device import fp32_trainable
from crossling.errors import DataError


class RewardRecipe:
    """``setup() → train() → save() → report()`` for one reward-model run."""

    def __init__(self, config: RewardRunConfig, command: str | None = None):
        self.config = config
        self.command = command
        self.run_dir = Path(config.output_dir)
        self.trainer = None
        self.resume: str | None = None  # the checkpoint this run continues (set by setup)
        self.summary: dict = {"source_lang": config.source_lang}

    def training_pairs(self) -> list[dict]:
        cfg = self.config
        if cfg.train_file:
            rows = preference_data.load_pairs(cfg.train_file, default_lang=cfg.source_lang)
        else:
            folder = preference_data.ensure_built(cfg.preference_data, [cfg.source_lang, *cfg.eval_languages])
            rows = preference_data.load_pairs(folder / "train.jsonl")
        rows = preference_data.per_language(rows, [cfg.source_lang], cfg.max_train_pairs, cfg.seed)[
            cfg.source_lang
        ]
        if not rows:
            where = cfg.train_file or cfg.preference_data
            raise DataError(f"{where}: no training pairs in source_lang {cfg.source_lang!r}")
        return rows

    def setup(self) -> None:
        import datasets
        from transformers import set_seed
        from trl import RewardConfig, RewardTrainer

        from sft.modeling import load_model_for_training
        from sft.runs import AtomicCheckpointMixin

        cfg = self.config
        self.run_dir, self.resume = training.start_run(cfg, self.command, "reward")
        rows = self.training_pairs()
        keys = ["prompt", "chosen", "rejected"] if "prompt" in rows[0] else ["chosen", "rejected"]
        train_ds = datasets.Dataset.from_list([{k: r[k] for k in keys} for r in rows])
        self.summary["train_pairs"] = len(rows)
        t0 = time.time()
        # the LoRA and the score head are drawn at load time: seeded, so runs repeat exactly
        set_seed(cfg.seed)
        model, tokenizer = load_model_for_training(
            cfg.model,
            task="seq_cls",
            quantization=cfg.quantization,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=training.target_modules(cfg),
        )
        training.say(f"loaded {cfg.model} as a reward model ({cfg.quantization}) in {time.time() - t0:.1f}s")
        args = RewardConfig(
            **training.training_arguments(cfg, self.run_dir),
            center_rewards_coefficient=cfg.center_rewards_coefficient,
        )

        class Trainer(AtomicCheckpointMixin, RewardTrainer):
            pass

        self.trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)
        fp32_trainable(self.trainer.model)
        dropped = len(rows) - len(self.trainer.train_dataset)
        if dropped:
            training.say(f"{dropped} pairs longer than max_length={cfg.max_length} were left out by TRL")
        self.summary["pairs_over_max_length"] = dropped
        training.add_callbacks(self.trainer, self.run_dir, cfg.report_to)

    def train(self) -> Path:
        adapter = training.train_and_save(
            self.trainer, self.run_dir, f"reward model ({self.config.source_lang})", self.summary, self.resume
        )
        self.summary["train_accuracy_last"] = training.last_logged(self.run_dir, "accuracy")
        return adapter

    def report(self, scorer: RewardScorer | None = None) -> dict:

        scorer = scorer or RewardScorer(str(self.run_dir))
        result = transfer.run_transfer_report(self.config, scorer, self.run_dir)
        self.summary["transfer"] = {lang: row["accuracy"] for lang, row in result["languages"].items()}
        (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2, ensure_ascii=False))
        return result


def run(config: RewardRunConfig, command: str | None = None) -> dict:
    recipe = RewardRecipe(config, command)
    recipe.setup()
    recipe.train()
    model = recipe.trainer.accelerator.unwrap_model(recipe.trainer.model)
    scorer = RewardScorer.from_model(model, recipe.trainer.processing_class, config.max_length)
    recipe.report(scorer)
    return recipe.summary


# --- scoring --------------------------------------------------------------------------------------


def reward_model_parts(path: str) -> tuple[str, str, str, int]:
    """(base model, quantization, adapter folder, max_length) of a reward run folder or adapter folder."""
    folder = Path(path)
    adapter = folder / "adapter" if is_adapter(folder / "adapter") else folder
    require_adapter(
        adapter,
        "reward_model",
        "It holds no trained reward model (a reward run keeps one in adapter/); "
        "train one with `crossling align reward configs/align/gemma3-270m_reward.yaml`",
    )
    run_config = adapter.parent / "config.yaml"
    if run_config.is_file():
        cfg = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
        return (
            cfg.get("model", "gemma3-270m"),
            cfg.get("quantization", "nf4"),
            str(adapter),
            cfg.get("max_length", 256),
        )
    return adapter_base_model(adapter), "nf4", str(adapter), 256


class RewardScorer:
    """Scores chats with a trained reward model: ``score(prompts, completions) -> list[float]``."""

    def __init__(self, reward_model: str, batch_size: int = 16):
        from sft.modeling import load_model_for_training

        base, quantization, adapter, max_length = reward_model_parts(reward_model)
        model, tokenizer = load_model_for_training(
            base, task="seq_cls", quantization=quantization, adapter=adapter
        )
        self._init(model, tokenizer, max_length, batch_size)
        self.name = reward_model

    @classmethod
    def from_model(cls, model, tokenizer, max_length: int = 256, batch_size: int = 16) -> RewardScorer:
        scorer = cls.__new__(cls)
        scorer._init(model, tokenizer, max_length, batch_size)
        scorer.name = "in-memory"
        return scorer

    def _init(self, model, tokenizer, max_length: int, batch_size: int) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.model.config.pad_token_id = tokenizer.pad_token_id

    def encode(self, prompt: list[dict], completion: list[dict] | str) -> list[int]:
        """Token ids as TRL's RewardTrainer builds them: the chat template over prompt + completion."""
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        ids = self.tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        # Keep the end: the score is read at the last token, and a long prompt must not hide the answer.
        return ids[-self.max_length :]

    def score(self, prompts: list[list[dict]], completions: list, progress: bool = False) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths batch together
        scores = [0.0] * len(encoded)
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="reward scoring", unit="batch", disable=not progress):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, i in enumerate(batch):
                scores[i] = float(logits[row, 0])
        return scores
