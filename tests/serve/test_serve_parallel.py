"""Serving parallelism: tensor / pipeline / data parallel sizes and the executor backend reach vLLM's
engine arguments (checked by vLLM's own ``AsyncEngineArgs``, no engine started); llama.cpp and
transformers refuse them in one line naming the field; ``engine: auto`` with them means vLLM."""

from __future__ import annotations

import asyncio

import pytest

import serve.engine as engines
from crossling.config import load_config
from crossling.errors import ConfigError
from crossling.vllm import engine_args, parallel_args
from serve.config import ServeConfig
from serve.engine import EngineError, build_engine, resolve_engine
from serve.engine.vllm_engine import VLLMEngine

PARALLEL = {
    "tensor_parallel_size": 2,
    "pipeline_parallel_size": 3,
    "data_parallel_size": 2,
    "distributed_executor_backend": "ray",
}


def test_defaults_are_one_process_and_add_no_engine_argument():
    c = ServeConfig()
    assert (c.tensor_parallel_size, c.pipeline_parallel_size, c.data_parallel_size) == (1, 1, 1)
    assert c.distributed_executor_backend is None and c.parallel == ""
    assert parallel_args() == {}
    one = engine_args("/m", max_model_len=512, device="cuda")
    assert not {k for k in one if "parallel" in k or "backend" in k}


def test_values_are_validated_where_they_are_read():
    for flag, value in (
        ("--tensor_parallel_size", "0"),
        ("--data_parallel_size", "-1"),
        ("--pipeline_parallel_size", "1.5"),
        ("--distributed_executor_backend", "slurm"),
    ):
        with pytest.raises(ConfigError, match=flag.removeprefix("--")):
            load_config(ServeConfig, None, [flag, value])
    c = load_config(ServeConfig, None, ["--engine", "vllm", "--tensor_parallel_size", "4"])
    assert c.tensor_parallel_size == 4 and c.parallel == "tensor_parallel_size: 4"


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
@pytest.mark.parametrize(
    "field,value",
    [("tensor_parallel_size", 2), ("pipeline_parallel_size", 2), ("data_parallel_size", 4), ("distributed_executor_backend", "mp")],
)  # fmt: skip
def test_single_process_engines_refuse_parallelism_in_one_line(engine, field, value):
    with pytest.raises(ConfigError) as err:
        load_config(ServeConfig, None, ["--engine", engine, f"--{field}", str(value)])
    message = str(err.value)
    assert f"{field}: {value} needs engine: vllm" in message and f"the {engine} engine" in message
    assert "\n" not in message


def test_parallel_settings_reach_vllm_engine_arguments():
    args = engine_args("/m", max_model_len=1024, device="cuda", **PARALLEL)
    assert {k: args[k] for k in PARALLEL} == PARALLEL
    assert args["data_parallel_backend"] == "ray"  # replicas across nodes need Ray too
    mp = parallel_args(tensor_parallel_size=2, data_parallel_size=2, distributed_executor_backend="mp")
    assert mp == {"tensor_parallel_size": 2, "data_parallel_size": 2, "distributed_executor_backend": "mp"}
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        parallel_args(tensor_parallel_size=0)


@pytest.mark.vllm
def test_vllm_accepts_the_argument_names(tiny_model_dir):
    """The names are vLLM 0.32's: its own AsyncEngineArgs takes them (a misspelt one is a TypeError)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    args = AsyncEngineArgs(**engine_args(str(tiny_model_dir), max_model_len=1024, device="cuda", **PARALLEL))
    assert (args.tensor_parallel_size, args.pipeline_parallel_size, args.data_parallel_size) == (2, 3, 2)
    assert (args.distributed_executor_backend, args.data_parallel_backend) == ("ray", "ray")


@pytest.mark.vllm
def test_served_config_reaches_the_engine_the_server_starts(tiny_model_dir, monkeypatch):
    """Config → build_engine → VLLMEngine.start → vLLM's AsyncEngineArgs; vLLM itself is not started
    (its AsyncLLM.from_engine_args records what it was given)."""
    from vllm.v1.engine.async_llm import AsyncLLM

    seen = []
    monkeypatch.setattr(AsyncLLM, "from_engine_args", staticmethod(lambda args, **kw: seen.append(args)))
    config = ServeConfig(model=str(tiny_model_dir), engine="vllm", max_model_len=256, **PARALLEL)
    engine = build_engine(config)
    assert isinstance(engine, VLLMEngine)
    asyncio.run(engine.start())
    (args,) = seen
    assert (args.tensor_parallel_size, args.pipeline_parallel_size, args.data_parallel_size) == (2, 3, 2)
    assert args.distributed_executor_backend == "ray" and args.max_model_len == 256


def test_auto_with_parallelism_is_vllm_or_a_clear_error(monkeypatch):
    config = ServeConfig(engine="auto", tensor_parallel_size=2)
    monkeypatch.setattr(engines, "auto_engine", lambda: "llamacpp")  # a CPU box with llama.cpp built
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    assert resolve_engine(config) == "vllm"
    assert resolve_engine(ServeConfig(engine="auto")) == "llamacpp"  # no parallelism: as before
    monkeypatch.setattr(engines, "vllm_available", lambda: False)
    with pytest.raises(EngineError, match=r"engine: auto with tensor_parallel_size: 2 needs vLLM"):
        build_engine(config)
    assert resolve_engine(ServeConfig(engine="auto")) == "llamacpp"
