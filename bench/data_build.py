"""Benchmark: data builds from a large synthetic SFT source; rows/s and peak memory per worker count.

    .venv/bin/python bench/data_build.py [--rows 1000000,10000000] [--workers 1,2] [--langid]

The source is a JSONL of chat rows in 6 languages with ~5% exact duplicates (10M rows: ten marked
copies of the 1M rows, see ``write_copies``), written once per ``--rows`` value (kept in ``--source_dir`` when given, so a rerun skips writing it). Each build then
runs in its own process with ``num_proc`` = the worker count: the workers read and validate the file
in byte-range shards and run the order-free quality gates; the reservoirs, dedup and mixing stay in
the main process, so memory is bounded by the reservoirs (``oversample × train_examples`` rows per
cell), not by the source, and the dataset is the same for every worker count (the sha256 of
``train.jsonl`` is printed to show it). Language ID is off by default (the synthetic text is not
real language); ``--langid`` turns it on.

Peak memory is reported as the main process's max RSS, the largest worker's max RSS
(``RUSAGE_CHILDREN``), and the peak of their sum sampled every 0.2 s (an upper bound: forked
workers share pages with the main process). CPU seconds (main process; workers) are printed too: on
a shared machine they, not the wall clock, say what the build costs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
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


MILLION = 1_000_000
USER_TURN = b'[{"role": "user", "content": "'


def write_copies(path: Path, base: Path, copies: int) -> None:
    """``copies`` × the rows of ``base``, copy k's questions starting with ``c<k>`` (unique texts of
    the same shape and mix): a 10M-row source in seconds rather than minutes of row generation."""
    with path.open("wb") as out:
        for k in range(copies):
            marker = USER_TURN + (f"c{k} ".encode() if k else b"")
            with base.open("rb") as f:
                while lines := f.readlines(1 << 26):
                    out.write(b"".join(lines).replace(USER_TURN, marker))


def source_for(rows: int, folder: Path) -> Path:
    """The synthetic source of ``rows`` rows in ``folder``, written unless already there (a multiple
    of a million above one million: copies of the 1M-row source, see :func:`write_copies`)."""
    path = folder / f"synthetic-{rows}.jsonl"
    done = path.with_suffix(".done")  # written last: a half-written source is never reused
    if not done.is_file():
        t0 = time.perf_counter()
        if rows > MILLION and rows % MILLION == 0:
            write_copies(path, source_for(MILLION, folder), rows // MILLION)
        else:
            write_source(path, rows)
        done.write_text(str(rows))
        mb = path.stat().st_size / 1e6
        print(f"wrote {rows:,} rows ({mb:,.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


class TreeRSS:
    """Peak of (this process + its children)'s summed RSS, sampled in a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.peak, self.every_s, self._stop = 0, every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just ended
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its ended children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def build_once(source: Path, rows: int, workers: int, train_examples: int, langid: bool) -> dict:
    """One build in this process (the child's side); returns the figures."""
    from crossling.config import load_config
    from data_recipes import build, card

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "name": "bench", "output_dir": tmp, "languages": LANGS, "extra_sft_files": [str(source)],
            "train_examples": train_examples, "dev_examples": 0, "count_tokens_with": None, "dev_fraction": 0.0,
            "translation_following": {"enabled": False}, "xcot": {"enabled": False},
            "cross_lingual_instructions": {"enabled": False}, "safety": {"enabled": False},
            "preference_prompts": {"enabled": False}, "num_proc": workers,
            "gates": {"langid": langid, "decontaminate": True, "multijail_csv": "/nonexistent"},
        }  # fmt: skip
        # strings as they are (a string field keeps quotes: the output went to a folder named '"' in
        # the working directory), the rest as JSON, which the command line reads as YAML
        flags = [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
        cfg = load_config(build.BuildConfig, None, flags)
        with TreeRSS() as tree:
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            result = build.run(cfg)
            out = card.write(cfg, result, "bench/data_build.py")
            seconds = time.perf_counter() - t0
            cpu = [b - a for a, b in zip(cpu0, _cpu_seconds(), strict=True)]
        digest = hashlib.sha256((out / "train.jsonl").read_bytes()).hexdigest()
    return {
        "rows": rows,
        "workers": workers,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "train_rows": len(result.train),
        "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tree_peak_mb": tree.peak / 2**20,
        "main_cpu_s": cpu[0],
        "workers_cpu_s": cpu[1],
        "train_sha256": digest,
        "report": result.report.to_text(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000", help="source sizes, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts (num_proc), comma-separated")
    parser.add_argument("--train_examples", type=int, default=20_000)
    parser.add_argument("--langid", action="store_true")
    parser.add_argument("--source_dir", default=None, help="keep the synthetic sources here for reruns")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one build: SOURCE,ROWS,WORKERS
    args = parser.parse_args()

    if args.child:
        source, rows, workers = args.child.split(",")
        figures = build_once(Path(source), int(rows), int(workers), args.train_examples, args.langid)
        print("RESULT " + json.dumps(figures), flush=True)
        return 0

    sizes = [int(r) for r in args.rows.split(",")]
    counts = [int(w) for w in args.workers.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.source_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for rows in sizes:
            source = source_for(rows, folder)
            for workers in counts:
                # each build in a fresh process: its max RSS is its own, not an earlier build's
                cmd = [sys.executable, __file__, "--child", f"{source},{rows},{workers}"]
                cmd += ["--train_examples", str(args.train_examples)] + (["--langid"] if args.langid else [])
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return done.returncode
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                figures = json.loads(line.removeprefix("RESULT "))
                results.append(figures)
                print("RESULT " + json.dumps({k: v for k, v in figures.items() if k != "report"}), flush=True)
                print(
                    f"{rows:>11,} rows, {workers} worker(s): {figures['seconds']:7.1f} s = "
                    f"{figures['rows_per_s']:>8,.0f} rows/s; peak RSS main {figures['main_peak_mb']:,.0f} MB, "
                    f"largest worker {figures['worker_peak_mb']:,.0f} MB, sum {figures['tree_peak_mb']:,.0f} MB; "
                    f"{figures['train_rows']:,} train rows, sha256 {figures['train_sha256'][:12]}",
                    flush=True,
                )
    print(results[-1]["report"])
    print(f"\nlangid {'on' if args.langid else 'off'}; train_examples {args.train_examples:,}")
    print(
        "| source rows | workers | seconds | rows/s | CPU s main + workers | peak RSS main | largest worker "
        "| sum (sampled) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in results:
        print(
            f"| {f['rows']:,} | {f['workers']} | {f['seconds']:.1f} | {f['rows_per_s']:,.0f} | "
            f"{f['main_cpu_s']:.0f} + {f['workers_cpu_s']:.0f} | {f['main_peak_mb']:,.0f} MB | "
            f"{f['worker_peak_mb']:,.0f} MB | {f['tree_peak_mb']:,.0f} MB |"
        )
    same = {(f["rows"], f["train_sha256"]) for f in results}
    if len(same) != len(sizes):
        print("MISMATCH: the worker counts built different datasets from the same source")
        return 1
    print("train.jsonl identical across worker counts for each source size")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
