"""Data builds at scale: ``num_proc`` workers read the user's JSONL in byte-range shards and run the
order-free gates, and the dataset stays the same byte for byte as with one process (shards made tiny
here so a small source crosses many of them); the translator fans out to an OpenAI-compatible
endpoint with bounded concurrency, retries and a cache."""

from __future__ import annotations

import codecs
import hashlib
import json
import random
import threading
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer

from crossling import corpora
from crossling.errors import DataError
from data_recipes import build, cli
from data_recipes.translator import Translator, TranslatorConfig

REPO = Path(__file__).resolve().parents[2]
NOUNS = [
    "Haus",
    "Garten",
    "Fenster",
    "Stadt",
    "Fluss",
    "Morgen",
    "Licht",
    "Bahnhof",
    "Freund",
    "Brief",
    "Markt",
    "Brücke",
    "Wald",
    "Straße",
    "Tisch",
]
SAME_FILES = ("train.jsonl", "dev.jsonl", "preference_prompts.jsonl", "quarantine.jsonl")


def _row(user: str, answer: str, lang: str, **extra) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    # a source of its own: without one a row's source is "<absolute path>:<line>", so the split
    # (and which rows the mix samples) would change with pytest's temporary folder
    source = "scale:" + hashlib.sha1((user + "\n" + answer).encode()).hexdigest()[:12]
    return {"messages": messages, "lang": lang, "source": source, **extra}


def _source(path: Path) -> Path:
    """Every case the gates and the reader tell apart, in an order that spreads them over shards."""
    de = "Der Zug nach Hamburg fährt heute später ab, weil ein Signal am Bahnhof gestört ist"
    en = "The train to Hamburg leaves later today because a signal at the station is broken"
    mgsm = corpora.mgsm_problems("de")[0]["question"]
    lines: list[str] = []
    for i in range(120):
        lang = ("de", "en")[i % 2]
        text = de if lang == "de" else en
        lines.append(json.dumps(_row(f"Frage {i}: {text}?", f"{text}, Nummer {i * 7}.", lang)))
        if i % 9 == 0:
            lines.append(lines[-1])  # exact duplicate
        if i % 11 == 0:  # a long text, then the same with one word changed: a near duplicate
            words = random.Random(i).choices(NOUNS, k=90)
            lines.append(json.dumps(_row(f"Frage {i}", " ".join(words), "de")))
            words[45] = "Regenschirm"
            lines.append(json.dumps(_row(f"Frage {i}", " ".join(words), "de")))
        if i % 13 == 0:
            lines.append(json.dumps(_row(f"Frage {i}", "x", lang)))  # too short
        if i % 17 == 0:
            lines.append(json.dumps(_row(f"Frage {i}", en + f" ({i})", "de")))  # wrong language
        if i % 19 == 0:
            lines.append(json.dumps(_row(mgsm, f"Das sind {i} Dollar.", "de")))  # contaminated
        if i % 23 == 0:
            lines.append(
                json.dumps({"messages": [{"role": "user", "content": "nur eine Frage"}], "lang": "de"})
            )
        if i % 29 == 0:
            lines += ["", "{not json", json.dumps(_row("split", f"{de} ({i})", "de", split="dev"))]
    text = "\r\n".join(lines[:40]) + "\n" + "\n".join(lines[40:])  # CRLF lines, no final newline
    path.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    return path


def _build(tmp: Path, source: Path, num_proc: int, *extra: str) -> Path:
    off = json.dumps({"enabled": False})
    args = [
        "build", str(REPO / "configs/data/default.yaml"), "--name", f"np{num_proc}", "--output_dir", str(tmp),
        "--languages", "[en, de]", "--train_examples", "400", "--dev_examples", "40", "--count_tokens_with", "null",
        "--extra_sft_files", f"[{source}]", "--lenient", "true", "--num_proc", str(num_proc),
        "--xcot", off, "--translation_following", off, "--safety", off, *extra,
    ]  # fmt: skip
    assert cli.main(args) == 0
    return tmp / f"np{num_proc}"


def _digests(out: Path) -> dict[str, str]:
    files = {name: (out / name).read_bytes() for name in SAME_FILES if (out / name).is_file()}
    report = json.loads((out / "drop_report.json").read_text())
    report.pop("seconds")  # the only figure that differs between two runs
    files["drop_report.json"] = json.dumps(report, sort_keys=True).encode()
    for arrow in sorted((out / "hf").rglob("*.arrow")):
        files[str(arrow.relative_to(out))] = arrow.read_bytes()
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_shards_cover_the_file_in_whole_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    data = codecs.BOM_UTF8 + b'{"a": 1}\r\n\n' + b'{"b": "' + b"x" * 300 + b'"}\n{"c": 3}\n{"d": 4}'
    path.write_bytes(data)
    shards = list(build.jsonl_shards(str(path), shard_bytes=16))
    assert b"".join(data[o : o + n] for _, o, n, _ in shards) == data
    assert all(data[o + n - 1 : o + n] == b"\n" for _, o, n, _ in shards[:-1])
    firsts = [first for *_, first in shards]
    # lines 1-2 fit the first 16 bytes; the 300-byte line 3 is read on to its end (with line 4,
    # which the extended read reached); line 5 has no final newline
    assert firsts == [1, 3, 5] and shards[1][2] > 300


def test_workers_build_the_same_dataset_byte_for_byte(tmp_path, monkeypatch):
    source = _source(tmp_path / "mine.jsonl")
    one = _build(tmp_path, source, 1)
    monkeypatch.setattr(build, "SHARD_BYTES", 1500)  # ~8 rows per shard: dozens of shards
    monkeypatch.setattr(build, "GATE_CHUNK", 5)
    two = _build(tmp_path, source, 2)
    report = json.loads((one / "drop_report.json").read_text())
    for reason in (
        "exact_duplicate",
        "near_duplicate",
        "too_short",
        "wrong_language",
        "contaminated",
        "quarantined",
    ):
        assert report["by_reason"].get(reason, 0) > 0, reason  # every path was taken
    assert (one / "quarantine.jsonl").is_file()
    assert _digests(one) == _digests(two)


def test_a_bad_row_stops_the_build_with_the_same_error_in_workers(tmp_path, monkeypatch):
    source = tmp_path / "mine.jsonl"
    good = [json.dumps(_row(f"Frage {i}", f"Antwort Nummer {i}.", "de")) for i in range(60)]
    source.write_text("\n".join([*good[:45], '{"messages": []}', *good[45:]]) + "\n", encoding="utf-8")
    monkeypatch.setattr(build, "SHARD_BYTES", 300)
    errors = []
    for num_proc in (1, 2):
        with pytest.raises(DataError) as err:
            _build(tmp_path, source, num_proc, "--lenient", "false")
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "mine.jsonl:46: 'messages' must be a non-empty list" in errors[0]


def test_translator_fans_out_with_bounded_concurrency_retries_and_a_cache(tmp_path):
    state = {"in_flight": 0, "peak": 0, "seen": set()}
    lock = threading.Lock()

    def reply(messages, model):
        text = messages[-1]["content"].split("\n\n", 1)[1]
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            first_try = text not in state["seen"]
            state["seen"].add(text)
        try:
            time.sleep(0.1)
            if first_try and text.endswith(("1", "4")):  # a transient failure: the connection drops
                raise ConnectionResetError("dropped")
            return f"[de] {text}"
        finally:
            with lock:
                state["in_flight"] -= 1

    texts = [f"sentence {i}" for i in range(12)]
    with FakeOpenAIServer(reply) as server:
        cfg = TranslatorConfig(
            model="m",
            base_url=server.base_url,
            cache_path=str(tmp_path / "t.sqlite"),
            batch_size=3,
            max_retries=2,
        )
        out = Translator(cfg).translate(texts, "en", "de", progress=False)
        assert out == [f"[de] {t}" for t in texts]
        assert 1 < state["peak"] <= 3  # fanned out, never past batch_size
        assert len(server.requests) == 12 + 3  # sentence 1, 4 and 11 were retried once
        again = Translator(cfg)  # another process on the same cache file: no request at all
        assert again.translate(texts, "en", "de", progress=False) == out and again.calls == 0
        assert len(server.requests) == 15
        no_retry = Translator(
            TranslatorConfig(
                model="m", base_url=server.base_url, cache_path=str(tmp_path / "u.sqlite"), max_retries=0
            )
        )
        with pytest.raises(Exception, match="translator endpoint"):
            no_retry.translate(["fresh 1"], "en", "de", progress=False)
