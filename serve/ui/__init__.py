"""The Gradio chat UI: a client of crossling's OpenAI-compatible API (see docs/ui.md)."""
