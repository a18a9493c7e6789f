"""crossling.device: the machine line that heads every timing table, and the CPU accounting beside it."""

import dataclasses
import os

import pytest

from crossling.device import cpu_clock, cpu_flags, cpu_summary, cpu_use

AVX2_ONLY = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma f16c bmi2\n"
AMX = "model name\t: Intel(R) Xeon(R) Platinum 8581C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_flags_keep_only_the_vector_isa():
    assert cpu_flags(AVX2_ONLY) == ["avx", "avx2", "fma", "f16c"]
    assert cpu_flags("no flags line") == []


def test_cpu_summary_names_the_model_and_its_widest_isa():
    assert cpu_summary(AVX2_ONLY).endswith("cores, AMD EPYC 7B13 (AVX2)")
    assert cpu_summary(AMX).endswith("Platinum 8581C (AVX2, AVX-512, AMX-BF16)")
    assert "unknown CPU" in cpu_summary("")


def _stat(user: int, system: int, idle: int, steal: int) -> str:
    # /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    return (f"cpu  {user} 0 {system} {idle} 5 0 0 {steal} 0 0\n"
            "cpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\nintr 1 2 3\n")  # fmt: skip


def test_cpu_use_splits_the_machine_between_this_process_others_and_the_host():
    hz = os.sysconf("SC_CLK_TCK")
    start = cpu_clock(_stat(1000, 100, 5000, 10))
    assert start.cpus == 2
    assert start.busy == pytest.approx(1100 / hz) and start.steal == pytest.approx(10 / hz)
    # 10 s later: the machine was busy 1.5 cores on average (15 s of CPU), this process used 12 s of
    # it, and the host took 1 s of the 20 CPU-seconds
    end = cpu_clock(_stat(1000 + 10 * hz, 100 + 5 * hz, 5000, 10 + hz))
    end = dataclasses.replace(end, wall=start.wall + 10, own=start.own + 12)
    use = cpu_use(start, end)
    assert use["own_cores"] == pytest.approx(1.2)
    assert use["other_cores"] == pytest.approx(0.3)
    assert use["steal"] == pytest.approx(0.05)


def test_without_proc_stat_only_this_process_is_measured():
    a = cpu_clock("")
    b = dataclasses.replace(a, wall=a.wall + 2, own=a.own + 1)
    assert cpu_use(a, b) == {"seconds": pytest.approx(2), "own_cores": pytest.approx(0.5), "other_cores": None,
                             "steal": None}  # fmt: skip


def test_cpu_clock_counts_this_process_cpu_time():
    a = cpu_clock()
    sum(i * i for i in range(300_000))  # some CPU time of our own
    assert cpu_clock().own > a.own
