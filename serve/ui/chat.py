"""The chat logic behind the UI, free of Gradio: history + settings -> one OpenAI chat request ->
a stream of UI updates (the partial reply, then notes for safety verdicts and errors).

It talks to any OpenAI-compatible server through the official ``openai`` client, so the UI works
against crossling's server, vLLM, or anything else that speaks ``/v1/chat/completions``. What it is
not: the server (``serve.app``) or the page layout (``serve.ui.app``). Every failure the user can
meet (bad key, rate limit, unknown model, server down, safety block) ends as a readable message in
the chat, never as an exception that leaves a spinner behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai

from crossling import languages
from crossling.langid import detect
from serve.ui import answer_language
from serve.ui.answer_language import AUTO, NONE

SAFETY_HEADER = "x-crossling-safety"
# Where a server may put a verdict inside a streamed chunk or choice (crossling's own first).
_SAFETY_FIELDS = ("crossling_safety", "safety", "safety_verdict")


@dataclass
class ChatSettings:
    """What the settings panel holds; one request is built from it plus the conversation."""

    model: str = ""
    system_prompt: str = ""
    answer_language: str = AUTO  # a language code, "auto" (detect from the message) or "none"
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256


@dataclass
class ChatUpdate:
    """One step of a streamed turn: the assistant messages to show and a one-line status."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""

    @property
    def reply(self) -> str:
        """The model's text in this update (notes excluded)."""
        return "".join(m["content"] for m in self.messages if not is_note(m))


def note(title: str, body: str = "") -> dict[str, Any]:
    """A message shown in the chat but never sent back to the model (safety verdicts, errors)."""
    return {"role": "assistant", "content": body, "metadata": {"title": title}}


def is_note(message: dict[str, Any]) -> bool:
    return bool((message.get("metadata") or {}).get("title"))


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or Gradio's/OpenAI's list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content if not isinstance(part, (list, tuple)))
    return ""


def history_to_messages(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Gradio chat history -> OpenAI messages: text only, notes and empty turns left out."""
    out = []
    for m in history or []:
        if m.get("role") not in ("user", "assistant") or is_note(m):
            continue
        text = message_text(m.get("content"))
        if text.strip():
            out.append({"role": m["role"], "content": text})
    return out


async def resolve_answer_language(setting: str, message: str) -> str | None:
    """The language code the answer should be in, or ``None`` for no instruction."""
    if setting == NONE:
        return None
    if setting != AUTO:
        return languages.get(setting).code

    # lingua's first call loads its models (seconds): keep the event loop free meanwhile.
    code = await asyncio.to_thread(detect, message)
    return code if code in answer_language.INSTRUCTIONS else None


def build_request(
    message: str, history: list[dict[str, Any]], settings: ChatSettings, answer_lang: str | None
) -> dict[str, Any]:
    """Keyword arguments for ``client.chat.completions.create`` (streaming, with usage)."""
    system = settings.system_prompt.strip()
    if answer_lang:
        system = f"{system}\n\n{answer_language.instruction(answer_lang)}".strip()
    messages = [{"role": "system", "content": system}] if system else []
    messages += history_to_messages(history)
    messages.append({"role": "user", "content": message})
    return {
        "model": settings.model,
        "messages": messages,
        "temperature": float(settings.temperature),
        "top_p": float(settings.top_p),
        "max_tokens": int(settings.max_tokens),
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_chat(
    client: openai.AsyncOpenAI, message: str, history: list[dict[str, Any]], settings: ChatSettings
) -> AsyncIterator[ChatUpdate]:
    """Send one turn and yield the growing reply; safety verdicts and errors become notes.

    Closing the generator (the stop button) closes the HTTP stream, so the server aborts generation.
    """
    if not message or not message.strip():
        yield ChatUpdate([note("Nothing to send", "Type a message first.")], "")
        return
    reply = ""
    try:
        model = settings.model or next(iter(m for _, m in await list_models(client)), "")
        if not model:
            yield ChatUpdate([note("❓ No model", f"The server at {client.base_url} lists no models.")], "")
            return
        settings = ChatSettings(**{**settings.__dict__, "model": model})
        if settings.answer_language == AUTO:  # the first detection loads lingua's models (seconds)
            yield ChatUpdate([{"role": "assistant", "content": ""}], "Detecting the message's language…")
        lang = await resolve_answer_language(settings.answer_language, message)
        request = build_request(message, history, settings, lang)
        yield ChatUpdate([{"role": "assistant", "content": ""}], f"Sending to `{model}`…")
        t0 = time.perf_counter()  # timings are the server's: language detection is not counted
        raw = await client.chat.completions.with_raw_response.create(**request)
        verdict = parse_safety(raw.headers.get(SAFETY_HEADER))
        stream = raw.parse()
        ttft, tokens, usage, finish = None, 0, None, None
        try:
            async for chunk in stream:
                verdict = chunk_safety(chunk) or verdict
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices[:1]:
                    delta = choice.delta.content or ""
                    if delta:
                        ttft = ttft if ttft is not None else time.perf_counter() - t0
                        reply += delta
                        tokens += 1
                        yield ChatUpdate(
                            [{"role": "assistant", "content": reply}], f"Generating… {tokens} tokens"
                        )
                    finish = choice.finish_reason or finish
        finally:
            await stream.close()
        if usage is not None and usage.completion_tokens:
            tokens = usage.completion_tokens
        elapsed = time.perf_counter() - t0
        messages = [{"role": "assistant", "content": reply}] if reply else []
        if finish == "content_filter":
            messages.append(safety_note(verdict, cut=_was_cut(verdict, reply)))
        elif not reply:
            messages.append(note("Empty reply", "The model ended its turn without writing anything."))
        yield ChatUpdate(messages, _status(model, lang, tokens, elapsed, ttft, finish))
    except openai.APIError as e:
        messages = [{"role": "assistant", "content": reply}] if reply else []
        messages.append(note(*describe_error(e, str(client.base_url))))
        yield ChatUpdate(messages, "Request failed.")


async def list_models(client: openai.AsyncOpenAI) -> list[tuple[str, str]]:
    """``(label, id)`` for each model the server offers; adapters are labelled with their base."""
    page = await client.models.list()
    out = []
    for m in page.data:
        extra = m.model_extra or {}
        parent = extra.get("parent")  # vLLM's and crossling's mark of a LoRA adapter ("root" is a path)
        label = f"{m.id}  (adapter on {parent})" if parent and parent != m.id else m.id
        out.append((label, m.id))
    return out


def describe_error(error: openai.APIError, base_url: str) -> tuple[str, str]:
    """``(title, body)`` a person can act on, for any error the ``openai`` client raises."""
    detail = _server_detail(error)
    if isinstance(error, openai.APITimeoutError):
        return (
            "⏱️ Timed out",
            f"The server at {base_url} did not answer in time. Try again or lower Max tokens.",
        )
    if isinstance(error, openai.APIConnectionError):
        return (
            "🔌 Server unreachable",
            f"Cannot reach {base_url}. Is `crossling serve` running there? ({error.message})",
        )
    status = getattr(error, "status_code", None)
    key_hint = (
        "Enter a key under Settings → Server → API key, or start the UI with `--api-key KEY` "
        "(or set CROSSLING_API_KEY)."
    )
    titles_and_hints = {
        401: ("🔑 Not authorized (401)", "The server rejected the API key.", key_hint),
        403: ("🔑 Forbidden (403)", "This key may not do this.", key_hint),
        404: ("❓ Not found (404)", "The server does not know this model.", "Pick another model."),
        413: ("📏 Too large (413)", "The request is too large.", "Clear the chat or undo turns."),
        429: ("⏳ Rate limited (429)", "The server is busy.", "Wait a moment, then press Retry."),
        400: ("🚫 Request refused (400)", "The server refused the request.", ""),
    }
    if status in titles_and_hints:
        title, fallback, hint = titles_and_hints[status]
        return title, _sentences(detail or fallback, hint)
    if status is not None and status >= 500:
        return f"💥 Server error ({status})", _sentences(detail or "The server failed", "See its log.")
    return "⚠️ Error", detail or str(error)


def _sentences(*parts: str) -> str:
    """Join message parts as sentences (a server's message may lack its final full stop)."""
    kept = [p.strip() for p in parts if p and p.strip()]
    return " ".join(p if p[-1] in ".!?。" else p + "." for p in kept)


def _server_detail(error: openai.APIError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return error.message or ""


# --- safety verdicts ---------------------------------------------------------------------------


def parse_safety(value: Any) -> dict[str, Any] | None:
    """A verdict from a header (JSON or ``key=value; ...``) or an extra field (dict), normalised to
    ``{"action", "category", "language", "stage"}``; ``None`` when there is nothing to read."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pairs = [p.split("=", 1) for p in value.replace(",", ";").split(";") if "=" in p]
            value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict) or not value:
        return None
    category = value.get("category") or value.get("top_category")
    flagged = value.get("flagged_categories")
    if not category and isinstance(flagged, (list, tuple)) and flagged:
        category = flagged[0]
    scores = value.get("categories")
    if not category and isinstance(scores, dict) and scores:
        category = max(scores, key=lambda k: float(scores[k] or 0))
    return {
        "action": value.get("action"),
        "category": category,
        "language": value.get("language") or value.get("lang"),
        "stage": value.get("stage") or value.get("role"),
    }


def chunk_safety(chunk: Any) -> dict[str, Any] | None:
    """A verdict carried as an extra field on a streamed chunk or its first choice, if any."""
    holders = [chunk, *chunk.choices[:1]]
    for holder in holders:
        extra = getattr(holder, "model_extra", None) or {}
        for name in _SAFETY_FIELDS:
            if extra.get(name) is not None:
                return parse_safety(extra[name])
    return None


def _was_cut(verdict: dict[str, Any] | None, reply: str) -> bool:
    """Output cut (part of a reply, or all of it, withheld) rather than the request blocked?"""
    stage = (verdict or {}).get("stage")
    if stage in ("input", "user", "prompt"):
        return False
    if stage in ("output", "assistant", "completion"):
        return True
    return bool(reply)  # no stage: a refusal comes alone, a cut follows some text


def safety_note(verdict: dict[str, Any] | None, cut: bool) -> dict[str, Any]:
    """The visible note for a ``content_filter`` finish: what happened, category and language."""
    verdict = verdict or {}
    category = (verdict.get("category") or "unspecified category").replace("_", " ")
    lang = verdict.get("language")
    lang_name = _language_name(lang) if lang else "unknown language"
    what = "Reply cut by the safety filter" if cut else "Blocked by the safety filter"
    body = (
        "The server's safety filter withheld the rest of this reply and stopped the generation."
        if cut
        else "The server's safety filter blocked this request and answered with a refusal."
    )
    return note(f"🛡️ {what} · {category} · {lang_name}", body)


def _language_name(code: str) -> str:
    try:
        return f"{languages.get(code).name} ({code})"
    except languages.UnknownLanguageError:
        return code


def _status(model: str, lang: str | None, tokens: int, elapsed: float, ttft: float | None, finish) -> str:
    parts = [f"`{model}`", f"answer language: {_language_name(lang) if lang else 'not set'}"]
    rate = f", {tokens / elapsed:.1f} tok/s" if elapsed > 0 and tokens else ""
    parts.append(f"{tokens} token{'' if tokens == 1 else 's'} in {elapsed:.1f} s{rate}")
    if ttft is not None:
        parts.append(f"first token after {ttft:.2f} s")
    if finish == "length":
        parts.append("stopped at Max tokens")
    elif finish == "content_filter":
        parts.append("ended by the safety filter")
    return " · ".join(parts)
