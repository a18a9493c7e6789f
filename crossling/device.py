"""Pick the device and the dtypes that are fast on it.

Measured on our 2-core AVX2 CPUs (no native bf16): float32 is the fast dtype for both training
(QLoRA nf4 with fp32 compute ~60 tok/s; bf16 compute >10x slower) and serving (vLLM 48 tok/s at
batch 8 in fp32 vs 14 in bf16). On CUDA, bf16 where the GPU supports it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cores() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpuinfo() -> str:
    """``/proc/cpuinfo``, or "" where there is none."""
    with contextlib.suppress(OSError):
        return Path("/proc/cpuinfo").read_text()
    return ""


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The vector-ISA flags of the CPU (avx*, fma, f16c, amx*) from ``/proc/cpuinfo``; [] elsewhere."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    line = next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), ":")
    return [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "f16c", "amx"))]


def cpu_summary(cpuinfo: str | None = None) -> str:
    """One line naming the machine a timing was taken on: cores, CPU model and its widest vector ISA
    (timings differ ~2x between an AVX2-only CPU and one with AVX-512 and AMX)."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        "unknown CPU",
    )
    flags = set(cpu_flags(cpuinfo))
    isa = [
        name
        for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX-BF16", "amx_bf16"))
        if flag in flags
    ]
    return f"{cores()} cores, {model}" + (f" ({', '.join(isa)})" if isa else "")


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds at one moment: what every process on the machine has used and what the hypervisor
    took for others (``/proc/stat``; ``None`` where there is none), and what this process and its
    finished children have used (``getrusage``)."""

    wall: float
    busy: float | None
    steal: float | None
    own: float
    cpus: int


def cpu_clock(stat: str | None = None) -> CpuClock:
    """Read the clocks now (``stat``: the text of ``/proc/stat``, for tests)."""
    if stat is None:
        stat = ""
        with contextlib.suppress(OSError):
            stat = Path("/proc/stat").read_text()
    lines = stat.splitlines()
    busy = steal = None
    if lines and lines[0].startswith("cpu "):
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        ticks = [int(x) for x in lines[0].split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / hz
        steal = ticks[7] / hz
    cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit()) or cores()
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return CpuClock(time.perf_counter(), busy, steal, own, cpus)


def cpu_use(start: CpuClock, end: CpuClock) -> dict[str, float | None]:
    """Between two readings, averaged over the wall time: cores kept busy by this process and the
    children it waited for (``own_cores``), by every other process (``other_cores``), and the share of
    the CPUs' time the hypervisor gave to other machines (``steal``). A slow run on a quiet machine
    shows ``other_cores`` near 0; time stolen by the host shows in ``steal`` (where the VM reports it)."""
    wall = max(end.wall - start.wall, 1e-9)
    own = (end.own - start.own) / wall
    out: dict[str, float | None] = {"seconds": wall, "own_cores": own, "other_cores": None, "steal": None}
    if start.busy is not None and end.busy is not None:
        out["other_cores"] = max(0.0, (end.busy - start.busy) / wall - own)
    if start.steal is not None and end.steal is not None:
        out["steal"] = (end.steal - start.steal) / (wall * end.cpus)
    return out


def default_device() -> str:
    return "cuda" if has_cuda() else "cpu"


def default_dtype(device: str | None = None):
    """float32 on CPU; bfloat16 on a GPU that has it, else float16."""
    import torch

    device = device or default_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def resolve_dtype(name: str | None, device: str | None = None):
    """``"auto"``/None → :func:`default_dtype`; ``"float32"``/``"bf16"``/... → that torch dtype."""
    import torch

    if name in (None, "auto"):
        return default_dtype(device)
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    key = aliases.get(name, name)
    dtype = getattr(torch, key, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return dtype


def fp32_trainable(model) -> int:
    """Keep LoRA weights in float32 on every device (and every trained weight on CPU).

    The frozen base may be 4-bit or bf16, but a trained weight stored in bf16 loses small updates
    (8 bits of mantissa), and on CPU bf16 arithmetic is >10x slower. TRL casts the LoRA weights of a
    quantized model to bf16; this undoes that. PEFT casts a LoRA layer's input to its weights' dtype;
    a fully trained module (a reward model's score head) gets no such cast, so on a GPU it keeps the
    base's dtype, or it would refuse bf16 hidden states outside autocast. Returns how many tensors
    it cast.
    """
    import torch

    cast = 0
    for name, param in model.named_parameters():
        if not param.requires_grad or param.dtype == torch.float32:
            continue
        if "lora_" in name or param.device.type == "cpu":
            param.data = param.data.float()
            cast += 1
    return cast


def mixed_precision(device: str | None = None) -> dict:
    """``TrainingArguments`` flags: autocast in the device's compute dtype on CUDA, none on CPU."""
    import torch

    dtype = default_dtype(device)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}
