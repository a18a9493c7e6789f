"""The generation cache shared between worker processes (evaluation against a remote endpoint at a
chosen concurrency, several runs at once): concurrent writers to one folder lose nothing and corrupt
nothing, a writer killed mid-write leaves no partial entry, and two processes running ``generate``
against the same endpoint and cache share what the other one generated."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3

from fake_openai_server import FakeOpenAIServer

from crossling.generation import GenerationCache, generate

WORKERS, KEYS, CHUNK = 4, 240, 8


def _value(key: str) -> list[str]:
    return [f"completion of {key}", "ü€😀 " * 3]


def _writer(folder: str, worker: int, barrier, errors) -> None:
    try:
        barrier.wait()  # all open the fresh folder at once: creation and WAL switch race too
        cache = GenerationCache(folder)
        # each worker writes its own keys and, interleaved, half of everyone's shared keys
        mine = [f"w{worker}-{i}" for i in range(KEYS)]
        shared = [f"shared-{i}" for i in range(worker % 2, KEYS, 2)]
        items = [*mine, *shared]
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            cache.put_many({k: _value(k) for k in chunk})
            got = cache.get_many(chunk)
            assert got == {k: _value(k) for k in chunk}, "a write was not read back"
        cache.close()
    except Exception as e:  # reported to the parent: a child's traceback is not a test failure
        errors.put(f"worker {worker}: {type(e).__name__}: {e}")


def _killed_mid_write(folder: str) -> None:
    cache = GenerationCache(folder)
    cache.put_many({"committed": _value("committed")})
    cache._db.executemany(  # the same statement put_many runs, then death before its commit
        "INSERT OR REPLACE INTO gen (key, value, created) VALUES (?, ?, 0)",
        [(f"torn-{i}", '["half') for i in range(1000)],
    )
    os._exit(0)


def test_concurrent_writers_lose_and_corrupt_nothing(tmp_path):
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing inherited, as separate eval runs are
    barrier, errors = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, barrier, errors)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems and [p.exitcode for p in procs] == [0] * WORKERS
    db = sqlite3.connect(tmp_path / "generations.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM gen").fetchone() == (WORKERS * KEYS + KEYS,)
    db.close()
    every = [f"w{w}-{i}" for w in range(WORKERS) for i in range(KEYS)] + [f"shared-{i}" for i in range(KEYS)]
    assert GenerationCache(tmp_path).get_many(every) == {k: _value(k) for k in every}


def test_a_writer_killed_mid_write_leaves_no_partial_entry(tmp_path):
    proc = mp.get_context("spawn").Process(target=_killed_mid_write, args=(str(tmp_path),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    cache = GenerationCache(tmp_path)
    assert cache.get_many(["committed", "torn-0", "torn-999"]) == {"committed": _value("committed")}
    cache.put_many({"after": ["ok"]})  # the folder is still writable
    assert cache.get_many(["after"]) == {"after": ["ok"]}
    assert cache._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _eval_worker(base_url: str, folder: str, prompts: list[str], out) -> None:
    texts = generate(
        "fake",
        [[{"role": "user", "content": p}] for p in prompts],
        backend="endpoint",
        base_url=base_url,
        api_key="k",
        cache_dir=folder,
        concurrency=4,
        progress=False,
    )
    out.put(texts)


def test_two_processes_share_one_cache_against_an_endpoint(tmp_path):
    with FakeOpenAIServer(lambda messages, model: messages[-1]["content"].upper(), api_key="k") as server:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        first = [f"prompt {i}" for i in range(40)]
        second = [f"prompt {i}" for i in range(20, 60)]  # half of them the first process asked
        p1 = ctx.Process(target=_eval_worker, args=(server.base_url, str(tmp_path), first, out))
        p1.start()
        a = out.get(timeout=120)
        p1.join(timeout=60)
        p2 = ctx.Process(target=_eval_worker, args=(server.base_url, str(tmp_path), second, out))
        p2.start()
        b = out.get(timeout=120)
        p2.join(timeout=60)
        assert a == [[p.upper()] for p in first] and b == [[p.upper()] for p in second]
        # the second process generated only what the first had not: 40 + 20 requests, not 80
        assert len(server.requests) == 60
