"""Load a model ready to train: 4-bit nf4 (QLoRA), full-precision LoRA or full fine-tuning, by device.

``load_model_for_training`` is shared by sft (causal LM) and align
(reward model = ``task="seq_cls"``, DPO/KTO = causal LM). It only *builds* the trainable model; it
does not know about datasets, trainers or run folders (see ``sft.trainer`` and ``sft.runs``).

Why these choices:
- nf4 + double quantization (bitsandbytes) keeps the frozen base at ~0.5 byte/parameter; the
  compute dtype is float32 on CPU (bf16 matmuls are >10x slower on our AVX2 CPUs without native
  bf16) and bf16 on CUDA (fp16 where the GPU has no bf16).
- LoRA on ``all-linear`` (PEFT's name for every Linear except the output head) is the QLoRA
  paper's recipe; embeddings/head can be made fully trainable with ``modules_to_save`` (new
  languages, new tokens).
- LoRA parameters stay in float32 on CPU: TRL casts them to bf16 for quantized models, which on
  these CPUs costs far more than it saves (``sft.trainer`` undoes that cast on CPU).
"""

from __future__ import annotations

import logging
from typing import Literal

from crossling.device import default_dtype, fp32_trainable
from crossling.errors import ConfigError
from crossling.models import _hub_error, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

Task = Literal["causal_lm", "seq_cls"]
Quantization = Literal["nf4", "none"]


def training_device(device: str | None = None) -> str:
    """``device`` if given; else this process's CUDA device under a launcher, or cuda/cpu.

    An FSDP / DeepSpeed launch (``accelerate launch --config_file configs/accelerate/fsdp_qlora.yaml``)
    without a GPU is refused here, before a model is loaded: accelerate (1.15) applies FSDP and
    DeepSpeed to GPU processes only, and CPU processes would silently train as plain gloo data
    parallel on a model set up for sharding.
    """
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        from accelerate import PartialState

        return f"cuda:{PartialState().local_process_index}"
    wanted = requested_sharding()
    if wanted:
        import accelerate

        raise ConfigError(
            f"this launch asks for {wanted} (accelerate launch set ACCELERATE_USE_{wanted}=true) but this "
            f"machine has no GPU: accelerate {accelerate.__version__} applies FSDP and DeepSpeed to GPU "
            "processes only, so CPU processes would train as plain data parallel, not as the config says. "
            "On CPUs use gloo DDP: torchrun --nproc_per_node N -m sft train CONFIG; keep the FSDP / "
            "ZeRO-3 configs for GPUs."
        )
    return "cpu"


def nf4_config(device: str):
    """bitsandbytes 4-bit NormalFloat with double quantization, computing in the device's fast dtype
    (:func:`crossling.device.default_dtype`: float32 on CPU, bf16 on CUDA when supported, else fp16)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=default_dtype(device),
        # FSDP / ZeRO-3 flatten a layer's weights into one tensor: the packed 4-bit weights must be stored
        # in the dtype of the others (a single CPU process keeps bitsandbytes' default uint8 storage)
        bnb_4bit_quant_storage=default_dtype(device)
        if device.startswith("cuda") or sharded_launch()
        else None,
    )


SHARDING_ENGINES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}


def requested_sharding() -> str | None:
    """``"FSDP"`` or ``"DEEPSPEED"`` when ``accelerate launch`` was given such a config, else None."""
    import os

    for key, engine in SHARDING_ENGINES.items():
        if os.environ.get(key, "").lower() == "true":
            return engine
    return None


def sharded_launch() -> bool:
    """True under ``accelerate launch`` with FSDP or DeepSpeed: they place (and shard) weights themselves."""
    return requested_sharding() is not None


def _load_base(path: str, task: Task, quantization: Quantization, device: str, num_labels: int):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict = {"dtype": default_dtype(device)}
    if quantization == "nf4":
        kwargs["quantization_config"] = nf4_config(device)
        if not sharded_launch():
            kwargs["device_map"] = {"": device}
    cls = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    if task == "seq_cls":
        kwargs["num_labels"] = num_labels
    try:
        model = cls.from_pretrained(path, **kwargs)
    except OSError as e:
        raise _hub_error(path, e) from e
    if quantization == "none":
        model = model.to(device)
    return model


def lora_config(
    task: Task,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    modules_to_save: list[str] | None = None,
):
    """The PEFT ``LoraConfig`` crossling trains with (seq_cls also trains the new ``score`` head)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save,
        bias="none",
        task_type=TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS,
    )


def load_model_for_training(
    model_name_or_path: str,
    *,
    task: Task = "causal_lm",
    quantization: Quantization = "nf4",
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    modules_to_save: list[str] | None = None,
    adapter: str | None = None,
    full_finetune: bool = False,
    device: str | None = None,
    num_labels: int = 1,
    gradient_checkpointing: bool = False,
):
    """Return ``(model, tokenizer)`` ready for a trainer.

    - ``quantization="nf4"``: QLoRA (frozen 4-bit base + LoRA); ``"none"``: LoRA on a full-precision
      base (fp32 on CPU, bf16 on CUDA); ``full_finetune=True`` (needs ``"none"``): every weight trains.
    - ``adapter``: continue training an existing PEFT adapter folder (its own r/alpha/targets win).
    - ``task="seq_cls"``: a sequence classifier (reward model) with ``num_labels`` outputs whose head
      is trained in full.
    """
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if task not in ("causal_lm", "seq_cls"):
        raise ConfigError(f"task must be causal_lm or seq_cls, got {task!r}")
    if quantization not in ("nf4", "none"):
        raise ConfigError(f"quantization must be nf4 or none, got {quantization!r}")
    if full_finetune and (quantization != "none" or adapter):
        raise ConfigError("full_finetune trains every weight: set quantization: none and no adapter")
    device = training_device(device)
    path = resolve_model(model_name_or_path)
    tokenizer = load_tokenizer(path)
    model = _load_base(path, task, quantization, device, num_labels)
    if task == "seq_cls" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # the classifier pools at the last non-pad token

    if full_finetune:
        model.config.use_cache = False
        _log_trainable(model)
        return model, tokenizer
    if quantization == "nf4" and not sharded_launch():
        # Casts the remaining (non-quantized) weights to fp32 and freezes the base. Gradient checkpointing
        # is opt-in: at our sequence lengths it costs ~30% speed for memory we do not need. Under FSDP /
        # ZeRO-3 every weight must keep one dtype (the nf4 storage dtype), so this step is skipped there.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if adapter:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    else:
        config = lora_config(task, lora_r, lora_alpha, lora_dropout, target_modules, modules_to_save)
        model = get_peft_model(model, config)
    fp32_trainable(model)  # adapters train in fp32 on every device; the frozen base keeps its dtype
    if quantization == "nf4":
        no_cpu_inference_packing(model)
    model.config.use_cache = False
    _log_trainable(model)
    return model, tokenizer


def no_cpu_inference_packing(model) -> int:
    """Keep every 4-bit layer on bitsandbytes' differentiable path; returns how many layers it set.

    On CPUs with AVX512-BF16, a ``Linear4bit`` run once in eval mode without grad (TRL's reference
    log-probs, a trainer's evaluation) repacks its weights for the ``gemv_4bit`` inference kernel,
    which has no autograd formula: every later training step would lose the gradient *through* the
    frozen base layers ("an autograd kernel was not registered ... silently incorrect behavior").
    tests/sft/test_sft_qlora_grads.py compares these gradients with an fp32 reference.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as the parameters they stand for."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def _log_trainable(model) -> None:
    trainable, total = count_parameters(model)
    logger.info(
        "trainable parameters: %s / %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
