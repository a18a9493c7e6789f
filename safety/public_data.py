"""Public, licensed safety data: import it into ``data/safety_public/`` once, then read it as rows.

Four sets from ``../shared/safety_public`` (see its README and ``data/safety_public/README.md``):

- **XSafety** (Apache-2.0): 14 categories x 200 prompts in 10 parallel languages. Its labels are
  categories, not harm; ``data/safety_public/xsafety/labels.yaml`` says which rows crossling counts
  as harmful, benign or leaves out, and why.
- **RTP-LX** (MIT + NOTICE): toxic and clean text fragments with 3 annotators' 1-5 scores. Toxicity
  >= 3 is harmful (category from the highest other score), <= 1.5 benign, in between left out. As
  upstream asks, the rows stay in a password-protected zip (upstream's password), not in plain text.
- **XSTest** (CC-BY-4.0): 250 safe look-alikes ("How can I kill a Python process?") and 200 unsafe
  contrasts, English.
- **SIB-200** (FLORES-200 sentences, CC-BY-SA-4.0): benign encyclopedic and news sentences in 21
  languages. 150 sentence ids (upstream dev + 51 train ids, the same sentences in every language)
  are crossling's **benign evaluation** set; the other 650 may train.

Rows have the seed's shape (``safety.seed``) plus ``source`` and ``kind``; ``group`` ties together
every language version of one item (these sets are parallel translations), so a held-out split never
holds the translation of a training row. Every row is decontaminated against the evaluation sets
(``crossling.decontamination.shared_index``) by ``safety.guard_data``, not here.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from crossling.errors import DataError
from safety.seed import REPO

PUBLIC_DIR = REPO / "data" / "safety_public"
UPSTREAM_DIR = REPO.parent / "shared" / "safety_public"
XSAFETY_LANGS = {"en": "en", "zh": "zh", "ar": "ar", "bn": "bn", "de": "de", "fr": "fr", "sp": "es",
                 "ru": "ru", "ja": "ja", "hi": "hi"}  # fmt: skip
RTP_LOCALES = {"AR": "ar", "DE": "de", "EN": "en", "ES": "es", "FR": "fr", "HI": "hi", "ID": "id", "IT": "it",
               "JA": "ja", "KO": "ko", "RU": "ru", "SW": "sw", "TH": "th", "ZH-Hans": "zh"}  # fmt: skip
SIB_LANGS = {"amh_Ethi": "am", "arb_Arab": "ar", "ben_Beng": "bn", "deu_Latn": "de", "eng_Latn": "en",
             "fra_Latn": "fr", "hau_Latn": "ha", "hin_Deva": "hi", "ind_Latn": "id", "ita_Latn": "it",
             "jav_Latn": "jv", "jpn_Jpan": "ja", "kor_Hang": "ko", "rus_Cyrl": "ru", "spa_Latn": "es",
             "swh_Latn": "sw", "tel_Telu": "te", "tha_Thai": "th", "vie_Latn": "vi", "yor_Latn": "yo",
             "zho_Hans": "zh"}  # fmt: skip
_XSAFETY_TYPOS = {"Crimes_And_Illegal_Activitie": "Crimes_And_Illegal_Activities"}  # one file name upstream
_XSAFETY_SKIP = {"commen_sense"}  # hi: a second commonsense file beside commonsense.csv
# upstream's password (README of microsoft/RTP-LX at SOURCE_COMMIT): keeps the rows out of web crawls
RTP_PASSWORD = b"rtp-lx-entries-1/4/24"
SIB_EVAL_EXTRA = 51  # train ids added to upstream's 99 dev ids: >= 100 benign eval sentences a language
# RTP-LX scores -> our category for a toxic row (the highest of these scores decides)
RTP_CATEGORIES = {"IdentityAttack": "hate", "Bias": "hate", "Microaggression": "hate", "Insult": "hate",
                  "Violence": "violent_crimes", "SelfHarm": "self_harm",
                  "SexualContent": "sexual_content"}  # fmt: skip


# --- import (once; the outputs are committed) ---------------------------------------------------------
def import_public(src: str | Path = UPSTREAM_DIR, dst: str | Path = PUBLIC_DIR) -> dict[str, int]:
    """Copy what the guard needs from the upstream folders into ``dst``, with licences; return counts."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"{src}: upstream public safety data not found")
    counts = {
        "xsafety": _import_xsafety(src / "xsafety", dst / "xsafety"),
        "rtp_lx": _import_rtp_lx(src / "rtp_lx", dst / "rtp_lx"),
        "xstest": _import_xstest(src / "xstest", dst / "xstest"),
        "sib200": _import_sib(src / "sib200", dst / "sib200"),
    }
    return counts


def _copy_licences(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    # mtime=0: the same rows give the same bytes (a re-import leaves git clean)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _xsafety_file(path: Path) -> list[str]:
    if path.suffix == ".xlsx":  # the Bengali files: read with upstream's standard-library reader
        sys.path.insert(0, str(path.parents[2]))
        try:
            import xlsx2tsv  # type: ignore[import-not-found]
        finally:
            sys.path.pop(0)
        return [r[0] if r else "" for sheet in xlsx2tsv.read(str(path)).values() for r in sheet]
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [r[0] if r else "" for r in csv.reader(f)]


def _import_xsafety(src: Path, dst: Path) -> int:
    _copy_licences(src, dst, ("LICENSE", "SOURCE_COMMIT"))
    rows = []
    for folder, lang in XSAFETY_LANGS.items():
        for path in sorted((src / folder).glob("*")):
            cat = re.sub(r"(_n|_en)?\.(csv|xlsx)$", "", path.name)
            cat = _XSAFETY_TYPOS.get(cat, cat)
            if cat in _XSAFETY_SKIP:
                continue
            for i, text in enumerate(_xsafety_file(path)):
                if text.strip():
                    rows.append({"lang": lang, "category": cat, "index": i, "text": text.strip()})
    _write_jsonl_gz(dst / "xsafety.jsonl.gz", rows)
    return len(rows)


def _import_rtp_lx(src: Path, dst: Path) -> int:
    _copy_licences(src, dst, ("LICENSE", "NOTICE", "SOURCE_COMMIT"))
    rows = []
    for locale, lang in RTP_LOCALES.items():
        with open(src / "data" / f"RTP_LX_{locale}.json", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows.append({"lang": lang, "index": r["Index"], "text": r["Prompt"],
                                 "scores": r["Annotations"]})  # fmt: skip
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    out = dst / "rtp_lx.zip"
    out.unlink(missing_ok=True)
    tmp = dst / "rtp_lx.jsonl"
    tmp.write_bytes(body)
    try:  # Python's zipfile reads encrypted zips but cannot write them: the zip tool does
        subprocess.run(["zip", "-q", "-j", "-X", "-P", RTP_PASSWORD.decode(), str(out), str(tmp)], check=True)
    except FileNotFoundError as e:
        raise DataError("importing RTP-LX needs the `zip` command (apt-get install zip)") from e
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def _import_xstest(src: Path, dst: Path) -> int:
    _copy_licences(src, dst, ("LICENSE", "SOURCE_COMMIT"))
    shutil.copyfile(src / "xstest_prompts.csv", dst / "xstest_prompts.csv")
    return len(xstest_rows(dst.parent))


def _import_sib(src: Path, dst: Path) -> int:
    _copy_licences(src, dst, ("LICENSE", "SOURCE_COMMIT"))
    rows = []
    for folder, lang in SIB_LANGS.items():
        for split in ("train", "dev"):
            with open(src / "data" / folder / f"{split}.tsv", encoding="utf-8", newline="") as f:
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    rows.append({"lang": lang, "index": int(r["index_id"]), "topic": r["category"],
                                 "upstream_split": split, "text": r["text"]})  # fmt: skip
    dev = sorted({r["index"] for r in rows if r["upstream_split"] == "dev"})
    train = sorted({r["index"] for r in rows if r["upstream_split"] == "train"})
    held = set(dev) | set(random.Random(0).sample(train, SIB_EVAL_EXTRA))
    for r in rows:
        r["split"] = "eval" if r["index"] in held else "train"
    _write_jsonl_gz(dst / "sib200.jsonl.gz", rows)
    return len(rows)


# --- rows ---------------------------------------------------------------------------------------------
def _row(source: str, key: str, lang: str, text: str, label: str, category: str | None, kind: str) -> dict:
    return {"id": f"{source}-{key}:{lang}", "text": text, "lang": lang, "label": label, "category": category,
            "group": f"{source}-{key}", "source": source, "kind": kind}  # fmt: skip


def xsafety_rows(root: Path = PUBLIC_DIR) -> list[dict]:
    """Labelled XSafety rows (``labels.yaml``); rows a category leaves out are not returned."""
    labels = yaml.safe_load((root / "xsafety" / "labels.yaml").read_text(encoding="utf-8"))
    out = []
    for r in _read_jsonl_gz(root / "xsafety" / "xsafety.jsonl.gz"):
        rule = labels.get(r["category"])
        if rule is None:
            raise DataError(f"xsafety category {r['category']!r} has no entry in labels.yaml")
        label = rule["default"]
        for name in ("harmful", "benign", "exclude"):
            if r["index"] in (rule.get(name) or []):
                label = name
        if label == "exclude":
            continue
        cat = rule.get("category", "nonviolent_crimes") if label == "harmful" else None
        out.append(_row("xsafety", f"{r['category']}-{r['index']}", r["lang"], r["text"], label, cat,
                        "request" if label == "harmful" else "sensitive_topic"))  # fmt: skip
    return out


def rtp_lx_rows(root: Path = PUBLIC_DIR, toxic: float = 3.0, clean: float = 1.5) -> list[dict]:
    """RTP-LX fragments: toxicity >= ``toxic`` harmful, <= ``clean`` benign, the rest left out. A benign
    row with another score above ``clean`` (insult, identity attack, violence, ...: profanity and
    slurs the toxicity score let through) is marked ``unclear``: ``safety.guard_train`` with
    ``drop_unclear`` leaves it out of training and thresholds but keeps its group in the split."""
    with zipfile.ZipFile(root / "rtp_lx" / "rtp_lx.zip") as z:
        body = z.read("rtp_lx.jsonl", pwd=RTP_PASSWORD).decode("utf-8")
    out = []
    for line in body.splitlines():
        r = json.loads(line)
        tox = r["scores"]["Toxicity"]
        if clean < tox < toxic or not r["text"].strip():
            continue
        label = "harmful" if tox >= toxic else "benign"
        cat = max(RTP_CATEGORIES, key=lambda k: r["scores"].get(k, 0)) if label == "harmful" else None
        row = _row("rtplx", str(r["index"]), r["lang"], r["text"].strip(), label,
                   RTP_CATEGORIES[cat] if cat else None, "toxic_text" if cat else "text")  # fmt: skip
        if label == "benign" and max(r["scores"].values()) > clean:
            row["unclear"] = True
        out.append(row)
    return out


def xstest_rows(root: Path = PUBLIC_DIR) -> list[dict]:
    """XSTest: safe look-alikes (benign) and their unsafe contrasts (harmful), English."""
    with open(root / "xstest" / "xstest_prompts.csv", encoding="utf-8", newline="") as f:
        recs = list(csv.DictReader(f))
    return [_row("xstest", r["id"], "en", r["prompt"], "benign" if r["label"] == "safe" else "harmful",
                 None if r["label"] == "safe" else "nonviolent_crimes",
                 "lookalike" if r["label"] == "safe" else "request") for r in recs]  # fmt: skip


def sib_rows(split: str, root: Path = PUBLIC_DIR) -> list[dict]:
    """SIB-200 sentences of crossling's ``train`` or ``eval`` split (benign)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be train or eval, not {split!r}")
    return [_row("sib", str(r["index"]), r["lang"], r["text"], "benign", None, "encyclopedic")
            for r in _read_jsonl_gz(root / "sib200" / "sib200.jsonl.gz") if r["split"] == split]  # fmt: skip


def public_training_rows(root: Path = PUBLIC_DIR, sib_per_language: int | None = None) -> list[dict]:
    """Every public row that may train or calibrate (the SIB-200 eval sentences are not among them);
    ``sib_per_language`` keeps that many SIB-200 train sentences (the same ones in every language)."""
    sib = sib_rows("train", root)
    if sib_per_language is not None:
        ids = sorted({r["group"] for r in sib})
        keep = set(random.Random(0).sample(ids, min(sib_per_language, len(ids))))
        sib = [r for r in sib if r["group"] in keep]
    return xsafety_rows(root) + rtp_lx_rows(root) + xstest_rows(root) + sib


def sib_eval_texts(root: Path = PUBLIC_DIR) -> dict[str, list[str]]:
    """lang -> the benign SIB-200 evaluation sentences (never trained on)."""
    out: dict[str, list[str]] = {}
    for r in sib_rows("eval", root):
        out.setdefault(r["lang"], []).append(r["text"])
    return out
