"""The user's own data: local JSONL / JSON / CSV / TSV / Parquet files and Hugging Face hub datasets.

Every record comes back as a dict with ``_line`` (1-based line or row number) so that any later error
can name the file and line. A malformed row is an error naming file, line and field — or, in lenient
mode, goes to a quarantine list the build writes to ``quarantine.jsonl``; it never vanishes.

``iter_records`` streams (bounded memory for million-row files); ``read_records`` collects.
Not here: the shipped corpora (``crossling.corpora``).
"""

from __future__ import annotations

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
) -> Iterator[dict[str, Any]]:
    """Stream records from ``path`` (or ``hf:name[:config]:split``), validated one by one.

    ``required`` fields must be present and non-empty; ``check`` returns a reason for a bad record.
    Lenient mode appends ``{"file", "line", "reason", "raw"}`` to ``quarantine`` instead of raising.
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
                raise DataError(f"{where}:{lineno}: {problem} (set lenient: true to quarantine bad rows)")
            if quarantine is not None:
                quarantine.append({"file": where, "line": lineno, "reason": problem, "raw": _short(rec)})
            continue
        rec["_line"] = lineno
        yield rec


def read_records(path: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    return list(iter_records(path, **kwargs))


def _short(rec: Any) -> str:
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
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    yield lineno, line.strip(), f"not valid JSON ({e.msg} at column {e.colno})"
                    continue
                yield lineno, rec, None if isinstance(rec, dict) else "expected a JSON object"
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} style
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        for i, rec in enumerate(data, start=1):
            yield i, rec, None if isinstance(rec, dict) else "expected a JSON object"
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for rec in reader:
                # line_num is the physical line the row ended on (header is line 1)
                bad = None in rec or any(v is None for v in rec.values())
                yield reader.line_num, dict(rec), "wrong number of columns" if bad else None
    elif suffix == ".parquet":
        yield from _parquet_records(path)
    else:
        raise DataError(f"{path}: unsupported format {suffix!r}; use one of {', '.join(FORMATS)} or hf:NAME")


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
