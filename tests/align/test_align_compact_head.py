"""DPO/KTO's log-probs on CPU: TRL's fused head scores only the completion's positions once
``align.training.score_labelled_positions_only`` has run, with the same values as full logits."""

from __future__ import annotations

import inspect

import torch


def test_trl_still_decides_compaction_by_the_patched_name():
    import trl.trainer.utils as trl_utils

    # if TRL renames or inlines this, the patch would silently stop working: fail here instead
    assert "compact = _use_triton(hidden_states.device)" in inspect.getsource(trl_utils.add_fused_lm_head)


def test_compact_head_matches_full_logits_and_scores_only_labelled_rows(tiny_model_dir, monkeypatch):
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from align.training import score_labelled_positions_only

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.randint(5, model.config.vocab_size, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 10:] = -100  # padding at the end of one row
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
        full = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    full = full.masked_fill(labels[:, 1:] == -100, 0.0)

    trl_utils.add_fused_lm_head(model)
    score_labelled_positions_only()
    rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(
        trl_utils._ChunkedLogProbFunction,
        "apply",
        lambda hidden, *a: rows.append(hidden.shape[0]) or apply(hidden, *a),
    )
    with torch.no_grad():
        got = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert rows == [int((labels[:, 1:] != -100).sum())]  # 5 + 5 + 3 rows, not 3 × 11
    torch.testing.assert_close(got, full, atol=1e-4, rtol=1e-4)
    score_labelled_positions_only()  # twice is harmless
    assert trl_utils._use_triton(torch.device("cpu")) is True
