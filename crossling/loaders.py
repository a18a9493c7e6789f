"""The user's own data: local JSONL / JSON / CSV / TSV / Parquet files and Hugging Face hub datasets.

Every record comes back as a dict with ``_line`` (1-based line or row number) so that any later error
can name the file and line. A malformed row is an error naming file, line and field — or, in lenient
mode, goes to a quarantine list the build writes to ``quarantine.jsonl``; it never vanishes.

``iter_records`` streams (bounded memory for million-row files); ``read_records`` collects.
Not here: the shipped corpora (``crossling.corpora``).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crossling.errors import DataError

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
HF_PREFIX = "hf:"


def iter_records(
    path: str | Path,
    required: tuple[str, ...] = (),
    check: Callable[[dict], str | None] | None = None,
    lenient: bool = False,
    quarantine: list | None = None,
    hint: str = "",
) -> Iterator[dict[str, Any]]:
    """Stream records from ``path`` (or ``hf:name[:config]:split``), validated one by one.

    ``required`` fields must be present and non-empty; ``check`` returns a reason for a bad record.
    Lenient mode appends ``{"file", "line", "reason", "raw"}`` to ``quarantine`` instead of raising.
    ``hint`` ends the error of a bad record: what the caller's user can do about it (only the caller
    knows its own options, e.g. the data build's ``lenient: true``).
    """
    where = str(path)
    for lineno, rec, problem in _raw_records(path):
        if problem is None:
            missing = [k for k in required if rec.get(k) in (None, "")]
            if missing:
                problem = f"missing field(s) {', '.join(missing)}"
            elif check is not None:
                problem = check(rec)
        if problem is not None:
            if not lenient:
                raise DataError(f"{where}:{lineno}: {problem}" + (f" ({hint})" if hint else ""))
            if quarantine is not None:
                quarantine.append({"file": where, "line": lineno, "reason": problem, "raw": clip_record(rec)})
            continue
        rec["_line"] = lineno
        yield rec


def read_records(path: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    return list(iter_records(path, **kwargs))


def clip_record(rec: Any) -> str:
    """A bad record as quarantine keeps it: its JSON (or text), cut at 500 characters."""
    text = rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False, default=str)
    return text[:500]


def _raw_records(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line, record, problem) triples; ``problem`` is set when the row cannot even be parsed."""
    if str(path).startswith(HF_PREFIX):
        yield from _hub_records(str(path)[len(HF_PREFIX) :])
        return
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from jsonl_records(path)
    elif suffix == ".json":
        try:
            text = _read_text(path)
            data = json.loads(text)
        except json.JSONDecodeError as e:
            line = text.split("\n")[e.lineno - 1]  # json counts lines at \n only
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({_json_error(line, e, e.colno - 1)})") from e
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} style
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        for i, rec in enumerate(data, start=1):
            yield i, rec, None if isinstance(rec, dict) else "expected a JSON object"
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: a BOM must not join the first header
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            try:
                for rec in reader:
                    # line_num is the physical line the row ended on (header is line 1)
                    bad = None in rec or any(v is None for v in rec.values())
                    yield reader.line_num, dict(rec), "wrong number of columns" if bad else None
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not valid UTF-8 after line {reader.line_num} ({e.reason})") from e
    elif suffix == ".parquet":
        yield from _parquet_records(path)
    else:
        raise DataError(f"{path}: unsupported format {suffix!r}; use one of {', '.join(FORMATS)} or hf:NAME")


def jsonl_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """One record per line. Read as bytes so that lines end at ``\\n`` only, as JSONL defines them: a text
    file also splits at a stray ``\\r``, which shifts every later line number. ``\\r\\n`` is fine (JSON
    whitespace); a UTF-8 BOM before the first line is dropped (Windows tools write one)."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield (
                    lineno,
                    clip_record(raw.decode("utf-8", "replace")),
                    f"not valid UTF-8 at byte {e.start + 1}",
                )
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, line, f"not valid JSON ({_json_error(line, e, e.pos)})"
                continue
            yield lineno, rec, None if isinstance(rec, dict) else "expected a JSON object"


def _json_error(line: str, e: json.JSONDecodeError, pos: int) -> str:
    """``Expecting value at column 19 (byte 25): '{"a": "日本語", "b": ⟨here⟩}'``.

    The column counts characters from 1 (as editors do) in the line as it is in the file (the raw
    line kept in quarantine is not stripped, so the column points into it too); the byte offset is
    added where it differs, for byte-based tools (``cut -b``, ``jq``); the excerpt marks the spot, so
    no one has to count.
    """
    column, byte = pos + 1, len(line[:pos].encode("utf-8")) + 1
    at = f"column {column}" + (f" (byte {byte})" if byte != column else "")
    excerpt = line[max(0, pos - 30) : pos] + "⟨here⟩" + line[pos : pos + 10]
    return f"{e.msg.removesuffix(' at')} at {at}: {excerpt!r}"  # json's "Invalid control character at"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start + 1} ({e.reason})") from e


def _parquet_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec, None


def _hub_records(spec: str) -> Iterator[tuple[int, Any, str | None]]:
    """``name[:config]:split`` streamed with ``datasets.load_dataset`` (clear error when offline)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise DataError(f"hub dataset spec must be hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT, got hf:{spec}")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=True)
        for i, rec in enumerate(ds, start=1):
            yield i, dict(rec), None
    except (ConnectionError, OSError, FileNotFoundError, ValueError) as e:
        raise DataError(
            f"hf:{spec}: cannot load from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}); "
            "no hub is reachable from here — download it elsewhere and point to a local file"
        ) from e
