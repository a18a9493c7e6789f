"""Export a tuned model for llama.cpp and Ollama: GGUF files, a GGUF LoRA and a Modelfile, each checked.

``export_gguf(config)`` merges the adapter into its base (``sft.runs.merge_adapter``), converts the
result with llama.cpp's own converter and quantizer into one GGUF per asked type (``f16``, ``q8_0``,
``q4_k_m``, ...; ``crossling.gguf_convert``), writes the adapter alone as a GGUF LoRA (for llama.cpp's
``--lora``), and an Ollama ``Modelfile`` with Gemma's turn format and its stop tokens. Then it
*verifies* every file in a real ``llama-server``: the tokenizer adds ``<bos>`` and tokenizes text as
transformers does, and greedy continuations agree with transformers' on the merged checkpoint
(exactly on the first ``exact_tokens`` for float types; a share of agreeing tokens for quantized ones).

It sits in ``sft`` because it needs ``sft.runs.merge_adapter``; the conversion itself is the bottom
layer's (``crossling.gguf_convert``), which the llama.cpp serve engine and generation backend share.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossling.adapters import adapter_base_model, require_adapter
from crossling.errors import CrosslingError
from crossling.gguf_convert import GGUF_TYPES, convert_lora, convert_model, model_gguf, read_metadata
from crossling.llamacpp import LlamaServer, build
from crossling.models import DEFAULT_ALIASES, VERIFY_PROMPTS, load_causal_lm, load_tokenizer, resolve_model

# Greedy agreement with transformers on the checkpoint the GGUFs were made from. Float types must give
# the same first `exact_tokens` tokens on every prompt; quantized types a mean share of agreeing
# tokens (before the first difference, of `verify_tokens`) of at least their floor here. The floors
# sit well below what the default model measured (docs/export.md, "Verification": q8_0 0.48,
# q4_k_m 0.55) and well above a broken conversion (0: the first token already differs).
FLOAT_TYPES = ("f32", "f16", "bf16")
MIN_AGREEMENT = {"q8_0": 0.3, "q6_k": 0.25, "q5_k_m": 0.2}
MIN_AGREEMENT_DEFAULT = 0.15  # q4_k_m, q4_0
# Text that must tokenize the same in llama.cpp as in transformers (scripts, digits, emoji, spaces).
TOKENIZE_TEXTS = [
    *VERIFY_PROMPTS.values(),
    "请用三句话介绍一下长城。",
    "भारत की राजधानी के बारे में कुछ बताइए।",
    "ما هي فوائد شرب الماء؟",
    "Расскажи коротко о Москве.",
    "Eleza kwa ufupi jinsi ya kupika wali.",
    "  two  spaces, a\ttab and\nnew lines 🚀🦙 3333 x=1+2",
]
GEMMA_LICENSE = (
    "Gemma is provided under and subject to the Gemma Terms of Use: https://ai.google.dev/gemma/terms"
)


@dataclass
class ExportConfig:
    """`crossling export gguf [CONFIG] [--adapter DIR] [--quant f16,q8_0,q4_k_m]`: GGUF + Ollama export."""

    model: str = field(
        default="gemma3-270m",
        metadata={"help": "Base model (default: the embedded one, or the base the adapter names)."},
    )
    adapter: str | None = field(
        default=None,
        metadata={"help": "PEFT adapter folder: merged into the base, and exported alone as a GGUF LoRA."},
    )
    quant: str = field(
        default="f16,q8_0,q4_k_m",
        metadata={"help": "GGUF types, comma-separated: f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0."},
    )
    output: str | None = field(
        default=None, metadata={"help": "Output folder (default: runs/export/<adapter's run or model>)."}
    )
    name: str | None = field(default=None, metadata={"help": "File name stem (default: the output's name)."})
    lora: bool = field(default=True, metadata={"help": "Also write the adapter alone as a GGUF LoRA."})
    modelfile_quant: str | None = field(
        default=None,
        metadata={"help": "GGUF the Modelfile's FROM names (default: the last of `quant`)."},
    )
    system: str | None = field(default=None, metadata={"help": "Modelfile SYSTEM prompt (none by default)."})
    verify: bool = field(
        default=True, metadata={"help": "Check every file in llama-server (see module doc)."}
    )
    verify_tokens: int = field(default=16, metadata={"help": "Greedy tokens compared per verify prompt."})
    exact_tokens: int = field(
        default=8,
        metadata={"help": "First greedy tokens a float GGUF (f32/f16/bf16, the LoRA) must match exactly."},
    )

    def __post_init__(self) -> None:
        for q in [*self.quants, *([self.modelfile_quant] if self.modelfile_quant else [])]:
            if q.lower() not in GGUF_TYPES:
                raise ValueError(f"unknown GGUF type {q!r}; use {', '.join(GGUF_TYPES)}")
        if not self.quants:
            raise ValueError("quant names no GGUF type")
        if self.modelfile_quant and self.modelfile_quant.lower() not in self.quants:
            raise ValueError(f"modelfile_quant {self.modelfile_quant!r} is not among quant ({self.quant})")
        if not 1 <= self.exact_tokens <= self.verify_tokens:
            raise ValueError("need 1 <= exact_tokens <= verify_tokens")

    @property
    def quants(self) -> list[str]:
        return [q.strip().lower() for q in self.quant.split(",") if q.strip()]

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        if self.adapter:
            parent = Path(self.adapter).resolve()
            stem = parent.parent.name if parent.name in ("adapter", "final") else parent.name
        else:
            stem = "gemma3-270m" if self.model in DEFAULT_ALIASES else Path(self.model).name
        return Path("runs") / "export" / stem

    def base_model(self) -> str:
        """The adapter's own base unless a model other than the default was asked for."""
        if self.adapter and self.model in DEFAULT_ALIASES:
            return adapter_base_model(self.adapter) or self.model
        return self.model


@dataclass
class FileCheck:
    """What verification found for one exported GGUF."""

    file: str
    kind: str  # a GGUF type, or "lora"
    size_mb: float
    bos_added: bool = False
    tokenize_mismatches: list[str] = field(default_factory=list)
    agreement: float = 0.0  # mean share of greedy tokens agreeing with transformers before a difference
    min_agreement: float = 0.0  # quantized types: the floor for `agreement`
    exact_tokens: int = 0  # float types: tokens every prompt must match exactly
    matched: dict[str, int] = field(default_factory=dict)  # prompt -> tokens matched before a difference
    continuations: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        greedy_ok = self.agreement >= self.min_agreement - 1e-9 and all(
            k >= self.exact_tokens for k in self.matched.values()
        )
        return self.bos_added and not self.tokenize_mismatches and greedy_ok


# --- the Modelfile ---------------------------------------------------------------------------------

# Gemma's turns, as crossling/templates/gemma_chat.jinja writes them: a system prompt opens the
# first user turn, every turn ends with <end_of_turn> and a newline, the answer starts after
# "<start_of_turn>model\n". No <bos> here: the GGUF's tokenizer adds it (verified).
OLLAMA_TEMPLATE = (
    '{{- $system := "" }}{{ range .Messages }}{{ if eq .Role "system" }}{{ $system = .Content }}{{ end }}'
    "{{ end }}{{ $first := true }}{{ range .Messages }}"
    '{{ if eq .Role "user" }}<start_of_turn>user\n'
    "{{ if and $first $system }}{{ $system }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n{{ $first = false }}"
    '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n{{ end }}'
    "{{ end }}<start_of_turn>model\n"
)


def modelfile(gguf_name: str, system: str | None = None, license_text: str | None = None) -> str:
    """An Ollama Modelfile for a Gemma-format GGUF next to it (``ollama create NAME -f Modelfile``)."""
    lines = [
        "# ollama create <name> -f Modelfile   (written by crossling export gguf)",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{OLLAMA_TEMPLATE}"""',
        'PARAMETER stop "<end_of_turn>"',
        # a base model may open the next turn itself instead of ending its own: that ends it too
        'PARAMETER stop "<start_of_turn>"',
    ]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    if license_text:
        lines.append(f'LICENSE """{license_text}"""')
    return "\n".join(lines) + "\n"


# --- export ----------------------------------------------------------------------------------------


def export_gguf(config: ExportConfig, log=print) -> dict:
    """Run the whole export (see the module docstring); returns the report written to export.json."""
    started = time.monotonic()
    llama = build()
    out = config.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    name = config.name or out.name
    base = config.base_model()
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=out) as tmp:
        source = Path(resolve_model(base))
        if config.adapter:
            from sft.runs import merge_adapter  # loads torch/peft: only when there is one to merge

            require_adapter(config.adapter, "adapter")
            log(f"merging {config.adapter} into {base}")
            source = merge_adapter(config.adapter, Path(tmp) / "merged", str(source))
        files = {q: out / f"{name}-{q}.gguf" for q in config.quants}
        convert_model(source, files, llama, log=log, name=name)
        lora_file = None
        if config.adapter and config.lora:
            log("convert_lora_to_gguf.py → GGUF LoRA")
            lora_file = convert_lora(
                config.adapter, out / f"{name}-lora-f32.gguf", resolve_model(base), llama
            )
        target = config.modelfile_quant or config.quants[-1]
        license_text = GEMMA_LICENSE if base in DEFAULT_ALIASES else None
        (out / "Modelfile").write_text(modelfile(files[target].name, config.system, license_text))
        checks = (
            verify_export(config, source, files, lora_file, resolve_model(base), log) if config.verify else []
        )
    report = {
        "output": str(out),
        "model": base,
        "adapter": config.adapter,
        "files": [str(p) for p in [*files.values(), *([lora_file] if lora_file else [])]],
        "modelfile": str(out / "Modelfile"),
        "checks": [asdict(c) | {"passed": c.passed} for c in checks],
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "export.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    failed = [c.file for c in checks if not c.passed]
    if failed:
        raise CrosslingError(
            f"export verification failed for {', '.join(failed)} (see {out / 'export.json'})"
        )
    return report


# --- verification ----------------------------------------------------------------------------------


def reference_greedy(model_dir: str | Path, prompts: list[str], n: int) -> list[list[int]]:
    """transformers' greedy continuation of each prompt: exactly ``n`` tokens (end-of-turn suppressed,
    as llama.cpp's ``ignore_eos`` does), on the checkpoint the GGUFs were made from."""
    import torch

    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir).eval()
    out = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        out.append(gen[0, enc["input_ids"].shape[1] :].tolist())
    return out


def matched_prefix(reference: list[int], got: list[int]) -> int:
    """How many tokens ``got`` matches ``reference`` before their first difference."""
    k = 0
    while k < min(len(reference), len(got)) and reference[k] == got[k]:
        k += 1
    return k


def verify_export(
    config: ExportConfig,
    source: Path,
    files: dict[str, Path],
    lora_file: Path | None,
    base_dir: str,
    log=print,
) -> list[FileCheck]:
    """One llama-server per file: ``<bos>`` added, tokenization as transformers', greedy agreement."""
    tokenizer = load_tokenizer(source)
    prompts = list(VERIFY_PROMPTS.values())
    reference = reference_greedy(source, prompts, config.verify_tokens)
    jobs = [(quant, path, []) for quant, path in files.items()]
    if lora_file is not None:  # the LoRA on the base at f16 must give the merged model's text
        jobs.append(("lora", model_gguf(base_dir, "f16"), [lora_file]))
    checks = []
    for kind, gguf, loras in jobs:
        t = time.monotonic()
        shown = loras[0] if loras else gguf
        check = FileCheck(str(shown), kind, round(Path(shown).stat().st_size / 2**20, 1))
        if kind == "lora" or kind in FLOAT_TYPES:
            check.exact_tokens = config.exact_tokens
        else:
            check.min_agreement = MIN_AGREEMENT.get(kind, MIN_AGREEMENT_DEFAULT)
        with LlamaServer(gguf, loras, slots=1, ctx_per_slot=512) as server:
            _check_tokenizer(server, tokenizer, check)
            lora = [{"id": 0, "scale": 1.0}] if loras else []
            for prompt, ref in zip(prompts, reference, strict=True):
                got = _greedy(server, prompt, config.verify_tokens, lora)
                check.matched[prompt] = matched_prefix(ref, got)
                check.continuations[prompt] = tokenizer.decode(got, skip_special_tokens=True)
            check.agreement = round(sum(check.matched.values()) / (len(prompts) * config.verify_tokens), 3)
        check.seconds = round(time.monotonic() - t, 1)
        verdict = "ok" if check.passed else "FAILED"
        floor = (
            f"first {check.exact_tokens} exact" if check.exact_tokens else f"floor {check.min_agreement:.2f}"
        )
        log(
            f"  {verdict}: {Path(shown).name} ({kind}, {check.size_mb} MB): <bos> "
            f"{'added' if check.bos_added else 'MISSING'}, tokenization mismatches "
            f"{len(check.tokenize_mismatches)}, greedy agreement {check.agreement:.2f} ({floor}; "
            f"matched {sorted(check.matched.values())} of {config.verify_tokens})"
        )
        checks.append(check)
    return checks


def _check_tokenizer(server: LlamaServer, tokenizer, check: FileCheck) -> None:
    import httpx

    def tokenize(text: str, add_special: bool) -> list[int]:
        body = {"content": text, "add_special": add_special, "parse_special": True}
        return httpx.post(f"{server.base_url}/tokenize", json=body, timeout=60).json()["tokens"]

    check.bos_added = tokenize("Hello", True)[:1] == [tokenizer.bos_token_id]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": TOKENIZE_TEXTS[0]}], tokenize=False, add_generation_prompt=True
    ).removeprefix(tokenizer.bos_token or "")
    for text in [*TOKENIZE_TEXTS, chat]:
        if tokenize(text, False) != tokenizer(text, add_special_tokens=False)["input_ids"]:
            check.tokenize_mismatches.append(text)


def _greedy(server: LlamaServer, prompt: str, n: int, lora: list[dict]) -> list[int]:
    """llama.cpp's greedy continuation of a *text* prompt (its own tokenizer, <bos> added)."""
    import httpx

    body = {
        "prompt": prompt,
        "n_predict": n,
        "temperature": 0.0,
        "samplers": ["temperature"],
        "ignore_eos": True,
        "return_tokens": True,
        "cache_prompt": False,
        "lora": lora,
    }
    resp = httpx.post(f"{server.base_url}/completion", json=body, timeout=300)
    resp.raise_for_status()
    return resp.json()["tokens"]


def gguf_summary(path: str | Path) -> dict:
    """A few metadata fields of a GGUF (architecture, name, file type, <bos> flag, chat template)."""
    meta = read_metadata(path)
    keys = ("general.architecture", "general.name", "general.file_type", "tokenizer.ggml.add_bos_token")
    out = {k: meta.get(k) for k in keys}
    out["has_chat_template"] = bool(meta.get("tokenizer.chat_template"))
    return out
