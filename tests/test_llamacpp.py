"""crossling.llamacpp: the llama-server command line on each kind of CPU, and its exit in words."""

from pathlib import Path

import pytest

from crossling import llamacpp
from crossling.llamacpp import LlamaCpp, LlamaServer, exit_reason, stream_chunk, use_extra_buffers


def test_no_extra_buffer_types_where_the_cpu_advertises_amx():
    assert use_extra_buffers(["avx", "avx2", "fma", "f16c"])
    assert not use_extra_buffers(["avx2", "avx512f", "amx_bf16", "amx_tile", "amx_int8"])


def test_the_server_command_turns_repacking_off_on_amx_cpus(monkeypatch):
    server = LlamaServer(Path("m.gguf"), slots=4, ctx_per_slot=512, threads=2, port=1234)
    llama = LlamaCpp(Path("/opt/llama"))
    monkeypatch.setattr(llamacpp, "cpu_flags", lambda: ["avx2", "amx_tile"])
    cmd = server.command(llama)
    assert "--no-repack" in cmd and cmd[cmd.index("-c") + 1] == "2048"
    monkeypatch.setattr(llamacpp, "cpu_flags", lambda: ["avx2"])
    assert "--no-repack" not in server.command(llama)


def test_exit_reason_names_the_signal():
    assert exit_reason(-4) == "killed by SIGILL (-4)"
    assert exit_reason(2) == "exit code 2"


def test_stream_chunk_reads_data_lines_and_raises_the_callers_error():
    class Mine(Exception):
        pass

    assert stream_chunk("", Mine) is None and stream_chunk(": keep-alive", Mine) is None
    assert stream_chunk('data: {"content": "Hal", "stop": false}', Mine) == {"content": "Hal", "stop": False}
    with pytest.raises(Mine, match="llama-server: .*slot unavailable"):
        stream_chunk('data: {"error": {"code": 503, "message": "slot unavailable"}}', Mine)
