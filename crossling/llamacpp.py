"""llama.cpp on CPUs: its server and quantizer built once from a registry package, and run by us.

``build()`` compiles ``llama-server`` and ``llama-quantize`` from the llama.cpp that the
llama-cpp-python sdist on PyPI vendors (one pinned version, fetched with ``pip download``), with the
CPU's own instruction set (``GGML_NATIVE``), into ``<cache>/llama.cpp/<version>/`` next to llama.cpp's
converter scripts (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, its ``gguf-py``). The build
runs under a file lock and is moved into place atomically, so two processes never build at once and
a killed build leaves nothing half-made; later calls return at once. The cache is
``crossling.models.cache_dir()``: ``$CROSSLING_CACHE``, else ``~/.cache/crossling``. A fresh build
takes ~6 min with ``-j2`` on 2 quiet cores (29 min on shared ones; docs/serve.md, "Build time");
a CI may keep the folder.

The rest is what every caller of llama.cpp needs, written once here in the bottom layer: Hugging Face
checkpoints and PEFT adapters → GGUF (``crossling.gguf_convert``), and ``LlamaServer``, a ``llama-server``
subprocess on a private 127.0.0.1 port (the serve engine, batch generation and the benchmark start
it). Not here: OpenAI's API, safety, exports for users (``sft.export``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crossling.device import cores, cpu_flags
from crossling.errors import CrosslingError
from crossling.models import cache_dir

# The llama-cpp-python release whose sdist vendors the llama.cpp we build (pyproject's `bench`
# extra pins the same one, so the benchmark's Python bindings and our server are one llama.cpp).
LLAMA_CPP_PYTHON = "0.3.36"
TARGETS = ("llama-server", "llama-quantize")
MANIFEST = "crossling-build.json"
# Converter files copied out of the source tree; the rest of it (176 MB) is dropped after the build.
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",  # this CPU's best instruction set (AVX2 or AVX-512; AMX: use_extra_buffers); per machine
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries: the folder can move (atomic rename)
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    # llama-server's own web UI would be downloaded from the Hugging Face hub: ours is in front
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",  # it only ever listens on 127.0.0.1 behind crossling
)


class LlamaCppError(CrosslingError):
    """llama.cpp could not be built, converted to or run."""


@dataclass(frozen=True)
class LlamaCpp:
    """A finished build: binaries and the converter scripts of one llama.cpp."""

    root: Path

    @property
    def server(self) -> Path:
        return self.root / "bin" / "llama-server"

    @property
    def quantize(self) -> Path:
        return self.root / "bin" / "llama-quantize"

    @property
    def convert_hf(self) -> Path:
        return self.root / "convert" / "convert_hf_to_gguf.py"

    @property
    def convert_lora(self) -> Path:
        return self.root / "convert" / "convert_lora_to_gguf.py"

    def manifest(self) -> dict:
        return json.loads((self.root / MANIFEST).read_text())


def build_root(version: str = LLAMA_CPP_PYTHON) -> Path:
    return cache_dir() / "llama.cpp" / version


def installed(version: str = LLAMA_CPP_PYTHON) -> LlamaCpp | None:
    """The finished build of ``version`` in the cache, or None (nothing is built or imported)."""
    found = LlamaCpp(build_root(version))
    ok = (found.root / MANIFEST).is_file() and all(
        os.access(p, os.X_OK) for p in (found.server, found.quantize)
    )
    return found if ok else None


def require() -> LlamaCpp:
    """The build, or one clear error saying how to make it."""
    found = installed()
    if found is None:
        raise LlamaCppError(
            f"llama.cpp is not built yet ({build_root()}): run `make llamacpp` "
            "(or `python -m crossling.llamacpp`): once per machine, up to ~30 min on 2 cores"
        )
    return found


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a second builder waits here, then finds the build done
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(progress: bool = True, jobs: int | None = None, sdist: str | Path | None = None) -> LlamaCpp:
    """Build llama.cpp once into the cache (see the module docstring); later calls return at once."""
    if found := installed():
        return found
    root = build_root()
    with _lock(root.with_name(root.name + ".lock")):
        if found := installed():  # another process finished it while we waited
            return found
        _check_tools()
        say = _progress(progress)
        jobs = jobs or cores()
        say(f"building llama-server + llama-quantize {LLAMA_CPP_PYTHON} once into {root} (-j{jobs})")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{root.name}-build-", dir=root.parent))
        try:
            src = _unpack(Path(sdist) if sdist else _download(work, say), work)
            _compile(src, work / "build", jobs, say, root.with_name(root.name + "-build.log"))
            out = work / "out"
            (out / "bin").mkdir(parents=True)
            (out / "convert").mkdir()
            for target in TARGETS:
                shutil.copy2(work / "build" / "bin" / target, out / "bin" / target)
            for name in CONVERTER_FILES:
                copy = shutil.copytree if (src / name).is_dir() else shutil.copy2
                copy(src / name, out / "convert" / name)
            seconds = time.monotonic() - started
            (out / MANIFEST).write_text(json.dumps(_manifest(jobs, seconds), indent=2))
            shutil.rmtree(root, ignore_errors=True)
            out.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"built in {seconds:.0f} s: {root}")
    return LlamaCpp(root)


def _progress(on: bool):
    def say(message: str) -> None:
        if on:
            print(f"llama.cpp: {message}", file=sys.stderr, flush=True)

    return say


def _check_tools() -> None:
    missing = [t for t in ("cmake", "c++", "cc") if shutil.which(t) is None]
    if missing:
        raise LlamaCppError(
            f"building llama.cpp needs {', '.join(missing)} "
            "(scripts/install_build_tools.sh, or Debian: apt-get install cmake g++ make)"
        )


def _download(work: Path, say) -> Path:
    """The sdist from PyPI through pip (its cache makes a second download free)."""
    say(f"downloading the llama-cpp-python=={LLAMA_CPP_PYTHON} sdist (76 MB, vendors llama.cpp)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(work)]
    run = subprocess.run(
        [*cmd, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"], capture_output=True, text=True, check=False
    )
    found = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if run.returncode != 0 or not found:
        raise LlamaCppError(f"pip download of llama-cpp-python failed:\n{run.stderr[-2000:]}")
    return found[0]


def _unpack(sdist: Path, work: Path) -> Path:
    """The sdist's vendored llama.cpp source tree."""
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "src", filter="data")
    found = list((work / "src").glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise LlamaCppError(f"{sdist.name} has no vendor/llama.cpp")
    return found[0].parent


def _compile(src: Path, build_dir: Path, jobs: int, say, log_path: Path) -> None:
    """cmake configure + build of the two targets; the full output goes to ``log_path`` (kept)."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    with open(log_path, "w", buffering=1) as log:
        say("configuring (cmake)")
        _run(["cmake", "-S", str(src), "-B", str(build_dir), *generator, *CMAKE_FLAGS], log, log_path)
        say("compiling (progress every 10 %)")
        cmd = ["cmake", "--build", str(build_dir), "--target", *TARGETS, "-j", str(jobs)]
        _run(cmd, log, log_path, on_line=_progress_printer(say))


def _progress_printer(say):
    """Print ninja's ``[k/n]`` or make's ``[ p%]`` progress in 10 % steps."""
    shown = [-10]

    def on_line(line: str) -> None:
        m = re.match(r"\[(\d+)/(\d+)\]", line) or re.match(r"\[\s*(\d+)%\]", line)
        if not m:
            return
        pct = int(m.group(1)) * 100 // int(m.group(2)) if m.lastindex == 2 else int(m.group(1))
        if pct >= shown[0] + 10:
            shown[0] = pct - pct % 10
            say(f"  {shown[0]} %")

    return on_line


def _run(cmd: list[str], log, log_path: Path, on_line=None) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:
        log.write(line)
        tail = [*tail[-30:], line]
        if on_line:
            on_line(line)
    if proc.wait() != 0:
        raise LlamaCppError(f"{' '.join(cmd[:3])} ... failed (log {log_path}):\n{''.join(tail)}")


def _manifest(jobs: int, seconds: float) -> dict:
    return {
        "llama_cpp_python": LLAMA_CPP_PYTHON,
        "targets": list(TARGETS),
        "cmake_flags": list(CMAKE_FLAGS),
        "jobs": jobs,
        "build_seconds": round(seconds, 1),
        "machine": platform.machine(),
        "cpu_flags": " ".join(cpu_flags()),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# --- a running llama-server ------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# OpenMP threads spin this many rounds at a barrier before sleeping (libgomp's default is 300,000).
# On a CPU shared with other jobs the default collapses llama.cpp: a descheduled thread keeps the
# other spinning (measured at load ~9 on 2 cores: 2 threads > 120 s for 32 tokens; 1 thread 1.9
# tok/s; OMP_WAIT_POLICY=passive 2.0; 10,000 spins 2.7-5.1). Set it yourself to override.
GOMP_SPINCOUNT = "10000"


def use_extra_buffers(flags: list[str] | None = None) -> bool:
    """Whether llama-server may put weights in its extra CPU buffer types (AMX tiles, repacked
    layouts). Not on a CPU that advertises AMX: in our 2-core VMs (KVM, AVX-512 + AMX flags) ggml's
    AMX q8_0 kernel dies with SIGILL at its first ``tilezero`` (gdb), although AMX itself runs there;
    ``--no-repack`` keeps weights in plain CPU buffers (44 tok/s single stream, q8_0, measured)."""
    return not any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


def stream_chunk(line: str, error: type[Exception]) -> dict | None:
    """One line of llama-server's streamed ``/completion`` answer (server-sent events): its JSON chunk,
    ``None`` for a line that carries none (blank keep-alives); a chunk reporting an error raises
    ``error`` (each caller's own: ``GenerationError`` offline, ``EngineError`` when serving)."""
    if not line.startswith("data: "):
        return None
    chunk = json.loads(line.removeprefix("data: "))
    if "error" in chunk:
        raise error(f"llama-server: {chunk['error']}")
    return chunk


def server_env() -> dict[str, str]:
    return {**os.environ, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", GOMP_SPINCOUNT)}


def exit_reason(returncode: int) -> str:
    """A process's return code in words: ``-4`` → ``killed by SIGILL (-4)``."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name} ({returncode})"
    return f"exit code {returncode}"


@dataclass
class LlamaServer:
    """``llama-server`` on a private 127.0.0.1 port: ``slots`` parallel sequences with continuous
    batching, each with ``ctx_per_slot`` tokens of context; all cores' threads; LoRA adapters loaded at
    start. A request must send every adapter's scale (``lora: [{id, scale}]``): one it leaves out
    keeps the global scale, 1.0 even with ``--lora-init-without-apply`` (measured). Log: ``log_path``."""

    gguf: Path
    loras: list[Path] = field(default_factory=list)
    slots: int = 8
    ctx_per_slot: int = 4096
    threads: int | None = None
    port: int | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, llama: LlamaCpp) -> list[str]:
        threads = str(self.threads or cores())
        cmd = [str(llama.server), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["-np", str(self.slots), "-c", str(self.slots * self.ctx_per_slot), "--cont-batching"]
        cmd += ["-t", threads, "-tb", threads, "--no-ui", "--cache-ram", "1024", "-lv", "2"]
        if self.loras:
            cmd += ["--lora", ",".join(str(p) for p in self.loras), "--lora-init-without-apply"]
        if not use_extra_buffers():
            cmd += ["--no-repack"]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 180.0) -> LlamaServer:
        """Start the process and wait until its /health answers 200 (model loaded)."""
        import httpx

        llama = require()
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                self.command(llama),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(),
            )
        atexit.register(self.stop)  # never leave a server behind when Python exits
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LlamaCppError(
                    f"llama-server exited ({exit_reason(self.proc.returncode)}):\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise LlamaCppError(f"llama-server did not load {self.gguf} in {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    """``python -m crossling.llamacpp``: build (or find) llama.cpp and print where it is."""
    found = build()
    print(json.dumps({"root": str(found.root), **found.manifest()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
