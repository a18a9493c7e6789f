"""``crossling demo``: the main job on the embedded default model.

Stages run in order, each skipped when its output already exists (so a rerun resumes):
prepare model → (more stages land as the pipeline grows).
"""

from __future__ import annotations

import argparse
import time

CONFIGS: dict[str, type] = {}

_PROMPTS = {
    "en": "The three most spoken languages in the world are",
    "fr": "La capitale de la France est",
    "de": "Die Hauptstadt von Deutschland ist",
}


def _continuations(folder) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for lang, prompt in _PROMPTS.items():
        enc = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=32, do_sample=False)
        text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"[{lang}] {prompt}{text}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crossling demo", description=__doc__)
    p.add_argument("--fast", action="store_true", help="a ~5-minute smoke version")
    p.parse_args(argv)
    from crossling import models

    start = time.perf_counter()
    folder = models.prepare()
    print(f"== default model ready ({time.perf_counter() - start:.1f}s): {folder}")
    _continuations(folder)
    return 0
