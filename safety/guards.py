"""Optional plug-in guards that run after the built-in classifier.

- ``openai_moderation``: any OpenAI-compatible ``POST /moderations`` (OpenAI's, or another crossling
  server's); OpenAI category names map onto ours.
- ``chat_guard``: any OpenAI-compatible chat endpoint serving a guard model, in one of two formats
  (``format``): Llama Guard 3 (our prompt; ``safe`` / ``unsafe\\nS1,S9``, S-codes map onto our
  categories) or Qwen3Guard-Gen (the text itself as the message, the model's own chat template holds
  the policy; ``Safety: Safe|Unsafe|Controversial\\nCategories: ...``). ``auto`` prompts by the model
  name and parses whichever format comes back.
- ``hf_guard``: the same prompts and parsing with a local Hugging Face guard model (transformers).
- ``pivot_translate``: a chat endpoint translates the text into a pivot language (English by
  default), and the built-in classifier scores the translation too — for languages the classifier
  is weak on.

A guard either returns category scores or raises :class:`GuardError`; the filter applies the
configured fail mode (closed by default). No guard runs unless the config lists it.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from crossling.languages import get
from crossling.models import load_causal_lm, load_tokenizer
from safety.categories import CATEGORIES
from safety.config import GuardConfig, SafetyConfig

if TYPE_CHECKING:
    from safety.filter import SafetyFilter


class GuardError(RuntimeError):
    """The guard could not give an answer (down, timed out, unparseable output)."""


# Llama Guard 3's hazard codes -> our categories (S5 defamation, S8 IP, S13 elections, S14 code
# interpreter abuse have no category of their own here; they count as non-violent crimes).
LLAMA_GUARD_CODES: dict[str, str] = {
    "S1": "violent_crimes", "S2": "nonviolent_crimes", "S3": "sex_crimes", "S4": "child_exploitation",
    "S5": "nonviolent_crimes", "S6": "specialized_advice", "S7": "privacy", "S8": "nonviolent_crimes",
    "S9": "weapons", "S10": "hate", "S11": "self_harm", "S12": "sexual_content", "S13": "nonviolent_crimes",
    "S14": "nonviolent_crimes",
}  # fmt: skip
_LLAMA_GUARD_NAMES = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy",
    "S8": "Intellectual Property", "S9": "Indiscriminate Weapons", "S10": "Hate",
    "S11": "Suicide & Self-Harm", "S12": "Sexual Content", "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}  # fmt: skip

# OpenAI moderation names -> our categories
OPENAI_TO_OURS: dict[str, str] = {
    "harassment": "hate", "harassment/threatening": "violent_crimes", "hate": "hate",
    "hate/threatening": "hate", "illicit": "nonviolent_crimes", "illicit/violent": "weapons",
    "self-harm": "self_harm", "self-harm/intent": "self_harm", "self-harm/instructions": "self_harm",
    "sexual": "sexual_content", "sexual/minors": "child_exploitation", "violence": "violent_crimes",
    "violence/graphic": "violent_crimes",
}  # fmt: skip


def llama_guard_prompt(text: str, role: str = "user") -> str:
    """The Llama Guard 3 classification prompt for one message."""
    who = "Agent" if role == "assistant" else "User"
    cats = "\n".join(f"{code}: {name}." for code, name in _LLAMA_GUARD_NAMES.items())
    return (
        f"Task: Check if there is unsafe content in '{who}' messages in conversations according to our "
        f"safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{cats}\n"
        f"<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{who}: {text}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {who} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


# Qwen3Guard-Gen's categories (its model card) -> ours. Politically sensitive topics, copyright and
# jailbreak attempts have no category of their own here: they count as non-violent crimes.
QWEN3GUARD_CATEGORIES: dict[str, str] = {
    "Violent": "violent_crimes", "Non-violent Illegal Acts": "nonviolent_crimes",
    "Sexual Content or Sexual Acts": "sexual_content", "PII": "privacy", "Suicide & Self-Harm": "self_harm",
    "Unethical Acts": "hate", "Politically Sensitive Topics": "nonviolent_crimes",
    "Copyright Violation": "nonviolent_crimes", "Jailbreak": "nonviolent_crimes",
}  # fmt: skip
_QWEN3GUARD_SAFETY = re.compile(r"Safety:\s*(Safe|Unsafe|Controversial)", re.IGNORECASE)
_QWEN3GUARD_CATEGORY = re.compile(
    "|".join(re.escape(c) for c in sorted(QWEN3GUARD_CATEGORIES, key=len)[::-1])
)


def parse_qwen3guard(
    output: str, controversial: str = "safe", fallback_category: str = "nonviolent_crimes"
) -> dict[str, float]:
    """Qwen3Guard-Gen output -> our category scores. ``Safety: Safe`` -> {}; ``Safety: Unsafe`` with
    ``Categories: Violent`` -> {violent_crimes: 1}; ``Controversial`` counts as ``controversial`` says
    (Qwen's "loose" mode: safe; "strict": unsafe). No ``Safety:`` line at all is a GuardError."""
    m = _QWEN3GUARD_SAFETY.search(output)
    if m is None:
        raise GuardError(f"unparseable Qwen3Guard output: {output[:80]!r}")
    level = m.group(1).capitalize()
    if level == "Safe" or (level == "Controversial" and controversial == "safe"):
        return {}
    line = next((ln for ln in output.splitlines() if ln.strip().lower().startswith("categories")), "")
    cats = {QWEN3GUARD_CATEGORIES[c] for c in _QWEN3GUARD_CATEGORY.findall(line)} or {fallback_category}
    return dict.fromkeys(cats, 1.0)


def guard_format(config: GuardConfig) -> str:
    """The format a guard is prompted in: the config's, or for ``auto`` the model's name decides."""
    if config.format != "auto":
        return config.format
    return "qwen3guard" if "qwen3guard" in (config.model or "").lower().replace("-", "") else "llama_guard"


def guard_messages(text: str, role: str, fmt: str) -> list[dict[str, str]]:
    """The chat messages that ask a guard model about ``text``. Qwen3Guard-Gen reads the conversation
    itself (its chat template holds the policy); for model output we have no user turn to show it."""
    if fmt == "qwen3guard":
        if role == "assistant":
            return [
                {"role": "user", "content": "(user message not shown)"},
                {"role": "assistant", "content": text},
            ]
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": llama_guard_prompt(text, role)}]


def parse_guard_output(output: str, controversial: str = "safe") -> dict[str, float]:
    """Either format, recognised by its content (a ``Safety:`` line is Qwen3Guard's)."""
    if _QWEN3GUARD_SAFETY.search(output):
        return parse_qwen3guard(output, controversial)
    return parse_llama_guard(output)


def parse_llama_guard(output: str, fallback_category: str = "nonviolent_crimes") -> dict[str, float]:
    """``safe`` -> {}; ``unsafe\\nS1,S9`` -> {violent_crimes: 1, weapons: 1}; else GuardError."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    if not lines:
        raise GuardError("empty guard output")
    head = lines[0].lower()
    if head.startswith("safe"):
        return {}
    if not head.startswith("unsafe"):
        raise GuardError(f"unparseable guard output: {output[:80]!r}")
    codes = re.findall(r"S\d{1,2}", " ".join(lines[1:]).upper())
    cats = {LLAMA_GUARD_CODES[c] for c in codes if c in LLAMA_GUARD_CODES} or {fallback_category}
    return dict.fromkeys(cats, 1.0)


class Guard:
    """Base: decides when it runs; subclasses implement :meth:`scores`."""

    def __init__(self, config: GuardConfig):
        self.config = config
        self.name = config.kind

    def applies(self, lang: str | None, harm: float, policy: SafetyConfig) -> bool:
        if self.config.languages and lang not in self.config.languages:
            return False
        if self.config.when == "uncertain":
            return self.config.uncertain_low <= harm < policy.threshold
        return True

    def scores(self, text: str, lang: str | None, role: str) -> dict[str, float]:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env or "", "") if self.config.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _post(self, path: str, payload: dict) -> dict:
        import httpx

        url = self.config.base_url.rstrip("/") + path  # type: ignore[union-attr]
        try:
            r = httpx.post(url, json=payload, headers=self._headers(), timeout=self.config.timeout_s)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise GuardError(f"{url}: {type(e).__name__}: {e}") from e

    def _chat(self, messages: list[dict], max_tokens: int) -> str:
        body = {"model": self.config.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        data = self._post("/chat/completions", body)
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise GuardError(f"malformed chat response: {str(data)[:120]}") from e


class OpenAIModerationGuard(Guard):
    def scores(self, text: str, lang: str | None, role: str) -> dict[str, float]:
        data = self._post(
            "/moderations", {"input": text, **({"model": self.config.model} if self.config.model else {})}
        )
        try:
            raw = data["results"][0]["category_scores"]
        except (KeyError, IndexError, TypeError) as e:
            raise GuardError(f"malformed moderation response: {str(data)[:120]}") from e
        out: dict[str, float] = {}
        for name, score in raw.items():
            cat = name if name in CATEGORIES else OPENAI_TO_OURS.get(name)
            if cat and isinstance(score, (int, float)):
                out[cat] = max(out.get(cat, 0.0), float(score))
        return out


class ChatGuard(Guard):
    def scores(self, text: str, lang: str | None, role: str) -> dict[str, float]:
        out = self._chat(guard_messages(text, role, guard_format(self.config)), 32)
        return parse_guard_output(out, self.config.controversial)


class HFGuard(Guard):
    """A local guard model; loaded on first use (seconds), greedy-decodes a few tokens."""

    def __init__(self, config: GuardConfig):
        super().__init__(config)
        self._model = None
        self._tok = None

    def _load(self) -> None:

        try:
            self._tok = load_tokenizer(self.config.model)
            self._model = load_causal_lm(self.config.model)
        except Exception as e:  # noqa: BLE001 - any load failure means "guard down"
            raise GuardError(f"cannot load guard model {self.config.model}: {e}") from e

    def scores(self, text: str, lang: str | None, role: str) -> dict[str, float]:
        import torch

        if self._model is None:
            self._load()
        tok, model = self._tok, self._model
        messages = guard_messages(text, role, guard_format(self.config))
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)  # fmt: skip
        else:
            ids = tok(messages[-1]["content"], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=32, do_sample=False)
        answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        return parse_guard_output(answer, self.config.controversial)


class PivotTranslateGuard(Guard):
    def __init__(self, config: GuardConfig, safety_filter: SafetyFilter):
        super().__init__(config)
        self.filter = safety_filter

    def applies(self, lang: str | None, harm: float, policy: SafetyConfig) -> bool:
        return lang != self.config.pivot and super().applies(lang, harm, policy)

    def scores(self, text: str, lang: str | None, role: str) -> dict[str, float]:

        target = get(self.config.pivot).name
        system = f"Translate the user's message into {target}. Output only the translation, nothing else."
        translation = self._chat(
            [{"role": "system", "content": system}, {"role": "user", "content": text}], 256
        )
        if not translation.strip():
            raise GuardError("empty translation")
        return self.filter.scores(translation)[1]


def build_guards(configs: list[GuardConfig], safety_filter: SafetyFilter) -> list[Guard]:
    kinds = {"openai_moderation": OpenAIModerationGuard, "chat_guard": ChatGuard, "hf_guard": HFGuard}
    return [
        PivotTranslateGuard(c, safety_filter) if c.kind == "pivot_translate" else kinds[c.kind](c)
        for c in configs
    ]
