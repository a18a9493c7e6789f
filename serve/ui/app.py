"""The Gradio page: a multilingual chat on top of :mod:`serve.ui.chat`.

``build_ui(base_url, api_key)`` returns the ``gr.Blocks``; the server mounts it at ``/ui``
(``mount_ui`` does it with this page's CSS), ``crossling ui`` launches it alone. All talking to the
model goes through the ``openai`` client in :mod:`serve.ui.chat`; this module only lays out the page
and wires Gradio's events (``gr.ChatInterface`` brings streaming, stop, retry, undo, edit, clear).
"""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr
import openai

from crossling.langid import detect
from serve.ui import answer_language
from serve.ui.chat import ChatSettings, describe_error, list_models, stream_chat

TITLE = "crossling chat"
# `unicode-bidi: plaintext` lets each paragraph pick its own direction, so Arabic lines read
# right-to-left and Latin ones left-to-right in the same conversation, input box included.
CSS = """
.message-content, .message-content p, .message-content li, textarea, .example-content {
  unicode-bidi: plaintext; text-align: start;
}
#crossling-chatbot .message-content { overflow-wrap: anywhere; }
#crossling-status { min-height: 1.5em; opacity: 0.85; font-size: 0.9em; }
"""
REQUEST_TIMEOUT_S = 300.0  # a long answer on a CPU-only server can take minutes


def make_client(base_url: str, api_key: str | None) -> openai.AsyncOpenAI:
    """The UI's client: no automatic retries, so an error shows at once instead of after backoff."""
    # A server without auth still needs some key string for the client to send.
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or "no-key", max_retries=0, timeout=REQUEST_TIMEOUT_S
    )


def build_ui(base_url: str, api_key: str | None = None) -> gr.Blocks:
    """The chat page for the OpenAI-compatible API at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``)."""
    clients: dict[str, openai.AsyncOpenAI] = {}

    def client(key_override: str | None = None) -> openai.AsyncOpenAI:
        # Created on first use, inside Gradio's event loop, so its connection pool belongs to it;
        # one per key (a person may type their own key in the page), the oldest dropped past 16.
        key = (key_override or "").strip() or api_key or ""
        if key not in clients:
            if len(clients) >= 16:
                clients.pop(next(iter(clients)))
            clients[key] = make_client(base_url, key or None)
        return clients[key]

    async def respond(
        message, history, model, system_prompt, answer_lang, temperature, top_p, max_tokens, key
    ):
        settings = ChatSettings(
            model=model or "",
            system_prompt=system_prompt or "",
            answer_language=answer_lang or answer_language.AUTO,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
        )
        async for update in stream_chat(client(key), message, history, settings):
            yield update.messages, update.status

    async def load_models(current, key):
        try:
            models = await list_models(client(key))
        except openai.APIError as e:
            title, body = describe_error(e, base_url)
            return gr.Dropdown(choices=[], value=None), f"**{title}** — could not list models: {body}"
        ids = [m for _, m in models]
        value = current if current in ids else (ids[0] if ids else None)
        status = f"{len(ids)} model(s) at `{base_url}`" if ids else f"No models listed at `{base_url}`."
        return gr.Dropdown(choices=models, value=value), status

    with gr.Blocks(title=TITLE, fill_height=True) as demo:
        gr.HTML("", head=f"<style>{CSS}</style>", container=False, padding=False)
        status = gr.Markdown("", elem_id="crossling-status", render=False)
        with gr.Sidebar(label="Settings", open=True, width=340):
            gr.Markdown("### Settings")
            model = gr.Dropdown(
                label="Model / adapter", choices=[], allow_custom_value=True, elem_id="crossling-model"
            )
            refresh = gr.Button("↻ Reload model list", size="sm")
            answer_lang = gr.Dropdown(
                label="Answer in",
                choices=answer_language.choices(),
                value=answer_language.AUTO,
                info="Adds “answer in …” to the system prompt, written in that language.",
                elem_id="crossling-answer-lang",
            )
            system_prompt = gr.Textbox(
                label="System prompt", lines=3, placeholder="Optional instructions for the model"
            )
            temperature = gr.Slider(
                0.0, 2.0, value=0.7, step=0.05, label="Temperature", elem_id="crossling-temperature"
            )
            top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top p", elem_id="crossling-top-p")
            max_tokens = gr.Slider(
                16, 2048, value=256, step=16, label="Max tokens", elem_id="crossling-max-tokens"
            )
            with gr.Accordion("Server", open=False, elem_id="crossling-server"):
                gr.Markdown(f"API: `{base_url}`")
                key = gr.Textbox(
                    label="API key",
                    type="password",
                    placeholder="(the key the UI was started with)",
                    info="Only needed when the server asks for a key the UI was not given.",
                    elem_id="crossling-api-key",
                )
        chat = gr.ChatInterface(
            respond,
            chatbot=gr.Chatbot(
                elem_id="crossling-chatbot",
                placeholder="Ask in any language — or pick an example.",
                buttons=["copy", "copy_all"],
                scale=1,
                height="70vh",
            ),
            textbox=gr.Textbox(
                placeholder="Message in any language…",
                elem_id="crossling-input",
                submit_btn=True,
                stop_btn=True,
                show_label=False,
                lines=1,
                max_lines=8,
            ),
            additional_inputs=[model, system_prompt, answer_lang, temperature, top_p, max_tokens, key],
            additional_outputs=[status],
            examples=[[prompt] for _, prompt in answer_language.EXAMPLES],
            editable=True,
            title=TITLE,
            fill_height=True,
        )
        status.render()
        # Stopping cancels the generator before it can say so itself; the partial reply stays.
        chat.textbox.stop(
            lambda: "⏹ Stopped — the partial reply is kept; press ↻ to retry.", outputs=[status]
        )
        demo.load(load_models, inputs=[model, key], outputs=[model, status])
        refresh.click(load_models, inputs=[model, key], outputs=[model, status])
        key.submit(load_models, inputs=[model, key], outputs=[model, status])
    return demo


def mount_ui(app: Any, base_url: str, api_key: str | None = None, path: str = "/ui") -> Any:
    """Mount the chat page on a FastAPI app at ``path`` (what ``crossling serve`` does)."""
    warm_up_language_id()
    return gr.mount_gradio_app(app, build_ui(base_url, api_key), path=path, css=CSS)


_warm_up_started = threading.Event()


def warm_up_language_id(wait: bool = False) -> None:
    """Load the language identifier ("Answer in: Auto") now, once per process, in a thread.

    lingua holds the GIL for the seconds its models take to load: done lazily on a person's first
    message it would freeze the whole server (every request, every stream) meanwhile; done while
    the server starts, it overlaps the engine's own start-up.
    """
    if _warm_up_started.is_set():
        return
    _warm_up_started.set()

    def load() -> None:

        detect("warm-up sentence for the language identifier")

    thread = threading.Thread(target=load, name="crossling-ui-langid-warm-up", daemon=True)
    thread.start()
    if wait:
        thread.join()
