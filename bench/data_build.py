"""Benchmark: build a dataset from a 1M-row synthetic SFT source; prints rows/s and peak memory.

    .venv/bin/python bench/data_build.py [--rows 1000000] [--langid]

The source is a JSONL of chat rows in 6 languages with ~5% exact duplicates. The build streams it
(validation + per-cell reservoir), then runs the gates on the sample the mix needs and writes the
dataset, so memory stays bounded by the reservoir, not by the source. Language ID is off by default
(the synthetic text is not real language); ``--langid`` turns it on.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LANGS = ["en", "de", "fr", "es", "ru", "zh"]
WORDS = {
    "en": "the river city market morning light station garden window friend letter",
    "de": "der Fluss Stadt Markt Morgen Licht Bahnhof Garten Fenster Freund Brief",
    "fr": "la rivière ville marché matin lumière gare jardin fenêtre ami lettre",
    "es": "el río ciudad mercado mañana luz estación jardín ventana amigo carta",
    "ru": "река город рынок утро свет вокзал сад окно друг письмо",
    "zh": "河 城市 市场 早晨 光 车站 花园 窗户 朋友 信",
}


def write_source(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = {k: v.split() for k, v in WORDS.items()}
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            j = rng.randrange(i) if i and rng.random() < 0.05 else i  # ~5% exact duplicates
            r = random.Random(j)
            lang = LANGS[j % len(LANGS)]
            q = " ".join(r.choices(vocab[lang], k=12)) + f" {j}?"
            a = " ".join(r.choices(vocab[lang], k=20)) + f" {j}."
            row = {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "lang": lang,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train_examples", type=int, default=20_000)
    parser.add_argument("--langid", action="store_true")
    args = parser.parse_args()

    from crossling.config import load_config
    from data_recipes import build, card

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "synthetic.jsonl"
        t0 = time.perf_counter()
        write_source(src, args.rows)
        print(
            f"wrote {args.rows:,} rows ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        overrides = {
            "name": "bench", "output_dir": tmp, "languages": LANGS, "extra_sft_files": [str(src)],
            "train_examples": args.train_examples, "dev_examples": 0, "count_tokens_with": None, "dev_fraction": 0.0,
            "translation_following": {"enabled": False}, "xcot": {"enabled": False},
            "cross_lingual_instructions": {"enabled": False}, "safety": {"enabled": False},
            "preference_prompts": {"enabled": False},
            "gates": {"langid": args.langid, "decontaminate": True, "multijail_csv": "/nonexistent"},
        }  # fmt: skip
        cfg = load_config(build.BuildConfig, None, [f"--{k}={json.dumps(v)}" for k, v in overrides.items()])
        t0 = time.perf_counter()
        result = build.run(cfg)
        card.write(cfg, result, "bench/data_build.py")
        seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(result.report.to_text())
    print(
        f"build: {args.rows:,} source rows -> {len(result.train):,} train rows in {seconds:.1f} s "
        f"= {args.rows / seconds:,.0f} rows/s; peak memory {peak_mb:,.0f} MB (langid {'on' if args.langid else 'off'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
