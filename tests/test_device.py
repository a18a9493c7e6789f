"""crossling.device: the machine line that heads every timing table."""

from crossling.device import cpu_flags, cpu_summary

AVX2_ONLY = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma f16c bmi2\n"
AMX = "model name\t: Intel(R) Xeon(R) Platinum 8581C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_flags_keep_only_the_vector_isa():
    assert cpu_flags(AVX2_ONLY) == ["avx", "avx2", "fma", "f16c"]
    assert cpu_flags("no flags line") == []


def test_cpu_summary_names_the_model_and_its_widest_isa():
    assert cpu_summary(AVX2_ONLY).endswith("cores, AMD EPYC 7B13 (AVX2)")
    assert cpu_summary(AMX).endswith("Platinum 8581C (AVX2, AVX-512, AMX-BF16)")
    assert "unknown CPU" in cpu_summary("")
