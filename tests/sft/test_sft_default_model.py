"""The real default model (Gemma 3 270M, 262k vocab): masks on its tokenizer, 2 QLoRA steps, same loss."""

from __future__ import annotations

import pytest
import torch

from sft.config import SFTRunConfig
from sft.recipe import SFTRecipe
from sft.trainer import trained_positions_loss_sum


@pytest.mark.slow
def test_default_model_qlora_two_steps_with_loss_equal_to_full_logits(
    default_model_dir, built_dataset, tmp_path
):
    cfg = SFTRunConfig(
        model=str(default_model_dir),
        data=str(built_dataset),
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        max_length=128,
        eval_steps=None,
        save_steps=100,
        eval_samples_per_language=1,
        mask_check_samples=40,
        logging_steps=1,
    )
    recipe = SFTRecipe(cfg)
    recipe.setup()  # verifies the assistant masks of 40 rows against the real tokenizer + template
    recipe.train()
    assert recipe.summary["steps"] == 2 and 0 < recipe.summary["trained_fraction"] < 0.6
    model = recipe.trainer.model
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # no bf16 on CPU
    batch = next(iter(recipe.trainer.get_train_dataloader()))
    base = model.get_base_model()
    with torch.no_grad():
        ids = batch["input_ids"]
        kwargs = {k: v for k, v in batch.items() if k in ("position_ids", "attention_mask")}
        hidden = base.model(input_ids=ids, **kwargs).last_hidden_state
        logits = base.lm_head(hidden).float()
        labels = batch["labels"][:, 1:]
        full = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1)
        )
        loss_sum, n = trained_positions_loss_sum(hidden, batch["labels"], base.get_output_embeddings())
    assert torch.allclose(loss_sum / n, full, rtol=1e-4), (loss_sum / n, full)
    assert 0.5 < float(full) < 12
