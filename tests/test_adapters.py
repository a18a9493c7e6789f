"""``crossling.adapters`` (adapter folders, ranks, fingerprints) and ``crossling.vllm.engine_args``,
the one builder of vLLM engine arguments behind offline generation and the server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from types import ModuleType

import pytest

from crossling import adapters, generation
from crossling.adapters import (
    PEFT_DEFAULT_RANK,
    adapter_base_model,
    adapter_modules_to_save,
    adapter_rank,
    fingerprint,
    is_adapter,
    require_adapter,
)
from crossling.errors import ConfigError
from crossling.vllm import GIB, engine_args, lora_rank_slot
from serve.engine.vllm_engine import VLLMEngine


def write_adapter(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"weights-1")
    return folder


# --- folders and configs --------------------------------------------------------------------------


def test_adapter_folder_check_names_what_path_and_hint(tmp_path):
    folder = write_adapter(tmp_path / "adapter", r=4)
    assert is_adapter(folder) and is_adapter(str(folder))
    assert not is_adapter(tmp_path) and not is_adapter(tmp_path / "missing")
    assert require_adapter(str(folder), "adapter") == folder
    with pytest.raises(ConfigError) as err:
        require_adapter(tmp_path, "candidate_adapter", "Train it with `crossling align dpo`.")
    assert str(err.value) == (
        f"candidate_adapter: {tmp_path} is not a PEFT adapter folder (no adapter_config.json). "
        "Train it with `crossling align dpo`."
    )
    with pytest.raises(ConfigError, match=r"^adapter 'x': .* \(no adapter_config.json\)$"):
        require_adapter(tmp_path, "adapter 'x'")


def test_rank_defaults_to_peft_and_covers_rank_pattern(tmp_path):
    assert adapter_rank(write_adapter(tmp_path / "a", r=16)) == 16
    assert adapter_rank(write_adapter(tmp_path / "b", lora_alpha=16)) == PEFT_DEFAULT_RANK == 8
    assert adapter_rank(write_adapter(tmp_path / "c", r=8, rank_pattern={"q_proj": 32})) == 32
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        adapter_rank(tmp_path / "missing")


def test_base_model_and_modules_to_save(tmp_path):
    named = write_adapter(tmp_path / "a", base_model_name_or_path="gemma3-270m", modules_to_save=["lm_head"])
    assert adapter_base_model(named) == "gemma3-270m"
    assert adapter_modules_to_save(named) == ["lm_head"]
    bare = write_adapter(tmp_path / "b", base_model_name_or_path="", modules_to_save=None)
    assert adapter_base_model(bare) is None and adapter_modules_to_save(bare) == []


# --- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_follows_content_not_mtime_or_place(tmp_path):
    folder = write_adapter(tmp_path / "adapter", r=4)
    first = fingerprint(folder)
    assert first == fingerprint(str(folder)) and len(first) == 16
    weights = folder / "adapter_model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # touched, same bytes
    assert fingerprint(folder) == first
    (folder / "README.md").write_text("notes")  # not a file that changes outputs
    assert fingerprint(folder) == first
    weights.write_bytes(b"weights-2")  # retrained into the same folder
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10 * 10**9))
    retrained = fingerprint(folder)
    assert retrained != first
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))  # a config that changes outputs
    assert fingerprint(folder) not in (first, retrained)
    copy = write_adapter(tmp_path / "copy", r=8)
    (copy / "adapter_model.safetensors").write_bytes(b"weights-2")
    assert fingerprint(copy) == fingerprint(folder)  # content, not place


def test_fingerprint_skips_checkpoints_and_reads_subfolders(tmp_path):
    run = tmp_path / "run"
    write_adapter(run / "adapter", r=4)
    first = fingerprint(run)
    write_adapter(run / "checkpoint-10", r=4)
    (run / "checkpoint-10" / "nested").mkdir()
    (run / "checkpoint-10" / "nested" / "model.safetensors").write_bytes(b"x")
    assert fingerprint(run) == first
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"weights-longer")
    assert fingerprint(run) != first  # the run's own adapter/ counts


def test_fingerprint_passes_hub_ids_through_and_hashes_single_files(tmp_path):
    assert fingerprint(None) is None and fingerprint("") == ""
    assert fingerprint("google/gemma-3-270m") == "google/gemma-3-270m"
    one = tmp_path / "model.safetensors"
    one.write_bytes(b"abc")
    assert fingerprint(one) not in (None, str(one))
    copy = tmp_path / "sub"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(b"abc")
    assert fingerprint(copy / "model.safetensors") == fingerprint(one)


def test_fingerprint_reads_each_file_once_per_process(tmp_path, monkeypatch):
    folder = write_adapter(tmp_path / "adapter", r=4)
    first = fingerprint(folder)

    def no_reading(*args, **kwargs):
        raise AssertionError("a file was hashed again")

    monkeypatch.setattr(adapters, "open", no_reading, raising=False)
    assert fingerprint(folder) == first


# --- vLLM engine arguments ------------------------------------------------------------------------


def test_engine_args_by_device():
    cpu = engine_args("/m", max_model_len=512, kv_cache_gib=1.5, device="cpu")
    assert cpu == {
        "model": "/m",
        "dtype": "float32",
        "max_model_len": 512,
        "enforce_eager": True,
        "disable_log_stats": True,
        "kv_cache_memory_bytes": int(1.5 * GIB),
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": 2048,
    }
    cuda = engine_args("/m", max_model_len=8192, dtype="bfloat16", max_num_seqs=16, device="cuda")
    assert cuda == {
        "model": "/m",
        "dtype": "bfloat16",
        "max_model_len": 8192,
        "enforce_eager": False,
        "disable_log_stats": True,
        "max_num_seqs": 16,
    }
    with pytest.raises(ValueError, match="kv_cache_gib"):
        engine_args("/m", max_model_len=512, kv_cache_gib=0, device="cpu")


def test_engine_lora_slots_are_sized_from_the_adapters(tmp_path):
    small = write_adapter(tmp_path / "small", r=8)
    big = write_adapter(tmp_path / "big", r=16, rank_pattern={"o_proj": 100})
    assert "enable_lora" not in engine_args("/m", max_model_len=512, device="cpu")
    lora = engine_args("/m", max_model_len=512, adapters=[small, big], lora_rank_floor=8, device="cpu")
    assert (lora["enable_lora"], lora["max_lora_rank"], lora["max_loras"]) == (True, 128, 2)
    kept = engine_args("/m", max_model_len=512, max_loras=4, device="cpu")  # LoRA on, no adapter yet
    assert (kept["max_lora_rank"], kept["max_loras"]) == (64, 4)
    assert [lora_rank_slot(r) for r in (1, 8, 9, 64, 65, 320, 600)] == [1, 8, 16, 64, 128, 320, 600]


@pytest.fixture
def fake_vllm(monkeypatch):
    """Stand-ins for the vLLM classes both engines construct: they record the keyword arguments."""
    seen: dict[str, dict] = {}

    class LLM:
        def __init__(self, **kwargs):
            seen["offline"] = kwargs

    class AsyncEngineArgs:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class AsyncLLM:
        @staticmethod
        def from_engine_args(args):
            seen["server"] = args.kwargs
            return object()

    class LoRARequest:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    members = {
        "vllm": {"LLM": LLM},
        "vllm.engine": {},
        "vllm.engine.arg_utils": {"AsyncEngineArgs": AsyncEngineArgs},
        "vllm.lora": {},
        "vllm.lora.request": {"LoRARequest": LoRARequest},
        "vllm.v1": {},
        "vllm.v1.engine": {},
        "vllm.v1.engine.async_llm": {"AsyncLLM": AsyncLLM},
    }
    for name, attrs in members.items():
        module = ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    generation.release()
    yield seen
    generation.release()


def test_offline_and_server_engines_share_engine_args(tiny_model_dir, tmp_path, fake_vllm, monkeypatch):
    adapter = str(write_adapter(tmp_path / "adapter", r=16))
    import torch
    from safetensors.torch import save_file

    # real weights: the server derives its all-zero base adapter from them
    save_file(
        {"base_model.model.lm.lora_A.weight": torch.ones(16, 4)}, f"{adapter}/adapter_model.safetensors"
    )
    monkeypatch.setenv("CROSSLING_VLLM_KV_GIB", "1")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    generation._vllm_engine(str(tiny_model_dir), adapter)
    offline = fake_vllm["offline"]
    server = VLLMEngine(
        str(tiny_model_dir),
        adapters={"a": adapter},
        max_model_len=offline["max_model_len"],
        max_batch_size=8,
        max_lora_rank=64,
        kv_cache_gib=1,
    )
    asyncio.run(server.start())
    served = fake_vllm["server"]
    shared = (
        "model", "dtype", "max_model_len", "enforce_eager", "kv_cache_memory_bytes",
        "enable_chunked_prefill", "max_num_batched_tokens", "enable_lora", "max_lora_rank",
    )  # fmt: skip
    assert {k: offline.get(k) for k in shared} == {k: served.get(k) for k in shared}
    assert offline["max_lora_rank"] == 64 and offline["enable_lora"]
    # what each adds on purpose: the offline engine keeps LoRA slots for later adapters and seeds
    # itself; the server has its adapters plus the all-zero one base requests run through beside
    # them (vLLM's mixed-batch LoRA bug, serve/engine/vllm_engine.py), and its batch size
    assert (offline["max_loras"], offline["seed"]) == (4, 0)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert (served["max_loras"], served["max_num_seqs"]) == (2, 8)
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ  # one KV mechanism: the engine argument
