"""crossling's SFT trainer: TRL's ``SFTTrainer`` with the output head run only where the loss is.

Why a subclass: with Gemma 3's 262k vocabulary the LM head dominates a small model's step. TRL 1.16
already has a fused, chunked head, but off-Triton devices (our CPUs) it scores *every* position and
also computes per-token entropy and top-1 accuracy. Here the hidden states of trained positions
(label != -100, typically 20-40% of an assistant-only batch) are gathered first, and the head +
cross-entropy run on those alone, in chunks, with the gradient computed in the same pass (so the
``N x vocab`` logits are never kept for backward). Same loss, same normalisation as TRL (sum over
trained tokens / ``num_items_in_batch``).

Also here: on CPU the LoRA weights are kept in float32 (TRL casts them to bf16 for quantized models,
>10x slower on CPUs without bf16), atomic checkpoints (``sft.runs.AtomicCheckpointMixin``) and the
real-token counters behind the progress bar and the tokens/s figure.

Under a launcher (torchrun, ``accelerate launch``) the trainer says, when training starts, how the
global batch and the learning rate come out for this world size (``launches.jsonl`` in the run
folder keeps one line per start, so a run resumed on another number of processes shows both).
"""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback
from trl import SFTTrainer

from crossling.device import fp32_trainable
from sft.runs import AtomicCheckpointMixin

IGNORE_INDEX = -100
LAUNCHES = "launches.jsonl"  # in the run folder: one record per start of training (see ``LaunchReport``)
HEAD_CHUNK = 512  # rows of the N x vocab logits computed at once: ~0.5 GB at 262k vocab in fp32


class _ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies of ``softcap(hidden @ weight.T)``, chunked over rows.

    The gradients w.r.t. ``hidden`` (and ``weight`` when it trains) are computed in the forward pass,
    chunk by chunk, so memory stays at one chunk of logits. Gradients are exact (not approximated).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap):
        need_w = weight.requires_grad
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), HEAD_CHUNK):
            h = hidden[start : start + HEAD_CHUNK]
            y = labels[start : start + HEAD_CHUNK]
            logits = (h @ weight.T).float()
            if softcap:
                tanh = torch.tanh(logits / softcap)
                logits = tanh * softcap
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            grad = torch.softmax(logits, dim=-1)  # d(sum CE)/d logits = softmax - onehot
            grad[torch.arange(y.numel(), device=y.device), y] -= 1.0
            if softcap:
                grad *= 1.0 - tanh * tanh
            grad = grad.to(weight.dtype)
            grad_h[start : start + HEAD_CHUNK] = grad @ weight
            if need_w:
                grad_w += (grad.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w if need_w else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gw = (grad_w * grad_out).to(grad_h.dtype) if grad_w is not None else None
        return grad_h * grad_out.to(grad_h.dtype), gw, None, None


def trained_positions_loss_sum(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module, softcap=None):
    """Sum of next-token cross-entropies at positions whose (shifted) label is trained.

    ``hidden``: ``[B, T, d]`` last hidden states; ``labels``: ``[B, T]`` unshifted labels.
    Returns ``(loss_sum, n_trained)``.
    """
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    h = hidden[:, :-1][mask]
    y = shift_labels[mask]
    if y.numel() == 0:
        return hidden.sum() * 0.0, 0  # keeps the graph connected for DDP
    weight = getattr(lm_head, "weight", None)
    if type(lm_head) is nn.Linear and lm_head.bias is None and weight is not None:
        return _ChunkedHeadCrossEntropy.apply(h, weight, y, softcap), y.numel()
    # Wrapped heads (PEFT modules_to_save, LoRA on the head): run the module on the gathered rows.
    logits = lm_head(h).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return nn.functional.cross_entropy(logits, y, reduction="sum"), y.numel()


def add_trained_positions_head(model) -> None:
    """Patch a causal LM so ``model(..., labels=..., trained_positions_loss=True)`` returns the loss
    sum over trained positions (no full logits). Goes through the model's own ``forward`` so DDP,
    FSDP and PEFT wrappers still see the call. Without the flag, the forward is unchanged."""
    previous = model.forward
    backbone_name = model.base_model_prefix
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    def forward(self, *args, trained_positions_loss: bool = False, labels=None, **kwargs):
        if not trained_positions_loss:
            if labels is not None:
                kwargs["labels"] = labels
            return previous(*args, **kwargs)
        kwargs["use_cache"] = False
        kwargs.pop("num_items_in_batch", None)
        out = getattr(self, backbone_name)(*args, **kwargs)
        return trained_positions_loss_sum(
            out.last_hidden_state, labels, self.get_output_embeddings(), softcap
        )

    model.forward = types.MethodType(forward, model)


def batch_plan(trainer) -> dict:
    """How the batch and the learning rate of any ``transformers.Trainer`` come out for this world size."""
    args = trainer.args
    return {
        "world_size": args.world_size,
        "distributed_type": str(getattr(trainer.accelerator.distributed_type, "value", "NO")),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        # transformers' own figure: per-device batch x accumulation x data-parallel processes
        "effective_batch_size": trainer.get_total_train_batch_size(args),
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
    }


def describe_launch(plan: dict) -> str:
    """One line: world size, per-device batch, accumulation, effective batch, learning rate."""
    start = f", from step {plan['step']}" if plan.get("step") else ""
    return (
        f"world size {plan['world_size']} ({plan['distributed_type']}) x {plan['per_device_train_batch_size']} "
        f"rows per device x {plan['gradient_accumulation_steps']} accumulation steps = effective batch "
        f"{plan['effective_batch_size']} rows per optimizer step; learning rate {plan['learning_rate']:g} "
        f"({plan['lr_scheduler_type']}, the same at every world size){start}"
    )


def record_launch(run_dir: Path, plan: dict) -> str | None:
    """Append ``plan`` to ``<run_dir>/launches.jsonl`` (a start at step 0 begins a new file); return a
    warning when a resumed run's effective batch differs from the one its checkpoint was trained with."""
    path = run_dir / LAUNCHES
    earlier = []
    if plan["step"] > 0 and path.is_file():
        # like metrics.jsonl: launches after the checkpoint this run resumes from are history rewritten
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
            if record.get("step", 0) < plan["step"]:
                earlier.append(record)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in [*earlier, plan]), encoding="utf-8")
    tmp.replace(path)
    before = earlier[-1]["effective_batch_size"] if earlier else None
    if before is not None and before != plan["effective_batch_size"]:
        return (
            f"WARNING: resumed at step {plan['step']} with effective batch {plan['effective_batch_size']}, but "
            f"the steps before were trained with {before}: the data skip counts steps, so rows are skipped "
            "or seen twice. Keep processes x per-device batch x accumulation the same when resuming."
        )
    return None


class LaunchReport(TrainerCallback):
    """At the start of training, the main process prints :func:`describe_launch` and records it in the
    run folder; ``trainer.launch`` keeps the plan. Works with any ``transformers.Trainer``."""

    def __init__(self, trainer, tag: str = "sft"):
        self.trainer, self.tag = trainer, tag

    def on_train_begin(self, args, state, control, **kwargs):
        plan = {"step": state.global_step, "time": round(time.time(), 3), **batch_plan(self.trainer)}
        self.trainer.launch = plan
        if not state.is_world_process_zero:
            return
        print(f"[{self.tag}] {describe_launch(plan)}", flush=True)
        run_dir = Path(args.output_dir)
        if run_dir.is_dir():
            warning = record_launch(run_dir, plan)
            if warning:
                print(f"[{self.tag}] {warning}", flush=True)


class CrosslingSFTTrainer(AtomicCheckpointMixin, SFTTrainer):
    """``SFTTrainer`` + loss on trained positions only, fp32 LoRA weights, atomic checkpoints."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_trained_positions_head(base)
        fp32_trainable(self.model)  # TRL casts a quantized model's LoRA weights to bf16: undo it
        self.real_tokens = 0  # this process; see ``total_real_tokens``
        self.trained_tokens = 0
        self.launch: dict = {}  # this start's batch plan (``LaunchReport``)
        self.add_callback(LaunchReport(self))

    def total_real_tokens(self) -> int:
        return self._total_train_tokens  # TRL's counter: gathered over processes, padding excluded

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # the logits are asked for: TRL's path builds them
            return super().compute_loss(model, inputs, True, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs.pop("num_items_in_batch", None)
        loss_sum, n_trained = model(**inputs, labels=labels, trained_positions_loss=True)
        denominator = num_items_in_batch if num_items_in_batch is not None else max(n_trained, 1)
        loss = loss_sum / torch.as_tensor(denominator, device=loss_sum.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None and model.training:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients across ranks
        if model.training:
            self._count_tokens(inputs, n_trained)
        return loss

    def _count_tokens(self, inputs: dict, n_trained: int) -> None:
        if "attention_mask" in inputs:
            local = inputs["attention_mask"].sum()
        else:  # padding-free: one row of real tokens
            local = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
        both = torch.stack([local.to(torch.long), torch.tensor(n_trained, device=local.device)])
        both = self.accelerator.gather_for_metrics(both[None]).sum(0)
        self._total_train_tokens += int(both[0])
        self.trained_tokens += int(both[1])
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
