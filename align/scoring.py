"""Sample the SFT policy, score the samples with the transferred reward model, turn scores into data.

- ``target_prompts``: held-out or training prompts per target language (NTREX translation requests
  with their references, or any ``{prompt, lang}`` JSONL such as data_recipes' preference_prompts).
- ``sample_and_score``: ``n`` samples per prompt through ``crossling.generation.generate`` (vLLM
  offline when installed and worth it, transformers otherwise; cached on disk), scored by a
  ``RewardScorer``, saved as ``scored.jsonl`` — rerunning with the same settings reuses it.
- ``dpo_pairs``: best vs worst sample per prompt, kept when the reward margin is at least ``min_margin``.
- ``kto_examples``: every sample labelled desirable / undesirable by a threshold or per-language quantiles.
- ``best_of_n``: the RM's favourite sample per prompt (the paper's baseline; no training).

Rows that do not make it (margin too small, middle quantile) are counted in the returned stats.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from align import training
from align.preference_data import pivot_for
from align.reward import RewardScorer
from crossling import corpora, generation
from crossling.adapters import fingerprint
from crossling.errors import DataError
from crossling.generation import clean_translation
from crossling.langid import in_language
from crossling.loaders import read_records
from data_recipes.recipes.translation_following import pick_instruction_language, translation_prompt

# --- pure parts (unit-tested) ---------------------------------------------------------------------


def dpo_pairs(scored: list[dict], min_margin: float) -> tuple[list[dict], dict]:
    """Best vs worst sample of each prompt when ``reward(best) - reward(worst) >= min_margin``."""
    pairs, small_margin, identical = [], 0, 0
    for row in scored:
        rewards = row["rewards"]
        best = max(range(len(rewards)), key=rewards.__getitem__)
        worst = min(range(len(rewards)), key=rewards.__getitem__)
        if row["completions"][best].strip() == row["completions"][worst].strip():
            identical += 1
            continue
        margin = rewards[best] - rewards[worst]
        if margin < min_margin:
            small_margin += 1
            continue
        pairs.append(
            {
                "prompt": row["prompt"],
                "chosen": [{"role": "assistant", "content": row["completions"][best]}],
                "rejected": [{"role": "assistant", "content": row["completions"][worst]}],
                "lang": row["lang"],
                "margin": round(margin, 4),
                "source": row["id"],
            }
        )
    stats = {
        "prompts": len(scored),
        "pairs": len(pairs),
        "margin_below_min": small_margin,
        "identical_samples": identical,
    }
    return pairs, stats


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quantile of no values")
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def kto_examples(
    scored: list[dict],
    threshold: float | None = None,
    desirable_quantile: float = 0.7,
    undesirable_quantile: float = 0.3,
) -> tuple[list[dict], dict]:
    """Unpaired KTO rows ``{"prompt", "completion", "label", "lang", "reward"}``.

    With ``threshold``: label = reward > threshold, for every sample. Without: per language, samples at
    or above the ``desirable_quantile`` are desirable, at or below ``undesirable_quantile`` undesirable,
    the middle is left out (per language, because a transferred RM's scale drifts between languages).
    """
    cuts: dict[str, tuple[float, float]] = {}
    if threshold is None:
        by_lang: dict[str, list[float]] = {}
        for row in scored:
            by_lang.setdefault(row["lang"], []).extend(row["rewards"])
        cuts = {
            lang: (quantile(v, desirable_quantile), quantile(v, undesirable_quantile))
            for lang, v in by_lang.items()
        }
    out, middle = [], 0
    for row in scored:
        for text, reward in zip(row["completions"], row["rewards"], strict=True):
            if threshold is not None:
                label = reward > threshold
            else:
                hi, lo = cuts[row["lang"]]
                if reward >= hi:
                    label = True
                elif reward <= lo:
                    label = False
                else:
                    middle += 1
                    continue
            out.append(
                {
                    "prompt": row["prompt"],
                    "completion": [{"role": "assistant", "content": text}],
                    "label": label,
                    "lang": row["lang"],
                    "reward": round(reward, 4),
                }
            )
    stats = {
        "samples": sum(len(r["rewards"]) for r in scored),
        "desirable": sum(r["label"] for r in out),
        "undesirable": sum(not r["label"] for r in out),
        "left_out_middle": middle,
        "cuts": {
            lang: {"desirable_at": round(h, 4), "undesirable_at": round(lo, 4)}
            for lang, (h, lo) in cuts.items()
        },
    }
    return out, stats


def reference_examples(scored: list[dict], method: str) -> list[dict]:
    """Each prompt's reference translation as training data: a desirable KTO row, or a DPO pair with the
    reference chosen over the prompt's lowest-rewarded sample. Rows carry ``source: reference`` so
    ``kto.jsonl`` / ``pairs.jsonl`` show which examples were not sampled. Every row needs a reference.
    """
    missing = [r["id"] for r in scored if not str(r.get("reference") or "").strip()]
    if missing:
        raise DataError(
            f"reference_examples needs a reference for every prompt; {len(missing)} have none "
            f"(first: {missing[0]}). Use prompts: ntrex or a JSONL with a 'reference' field"
        )
    out = []
    for row in scored:
        answer = [{"role": "assistant", "content": row["reference"].strip()}]
        if method == "kto":
            out.append(
                {"prompt": row["prompt"], "completion": answer, "label": True, "lang": row["lang"],
                 "reward": None, "source": "reference"}
            )  # fmt: skip
        else:
            worst = min(range(len(row["rewards"])), key=row["rewards"].__getitem__)
            out.append(
                {"prompt": row["prompt"], "chosen": answer,
                 "rejected": [{"role": "assistant", "content": row["completions"][worst]}],
                 "lang": row["lang"], "margin": None, "source": "reference"}
            )  # fmt: skip
    return out


def fidelity_chrf(text: str, reference: str | None, lang: str) -> float:
    """Sentence chrF against the reference, 0 when the answer is not in ``lang`` (the independent judge).

    Uses the eval's own conventions: the translation is cut out of a chatty
    answer the same way, and language fidelity is the same ``crossling.langid`` check.
    """
    import sacrebleu

    text = clean_translation(text)
    if not in_language(text, lang):
        return 0.0
    if not reference:
        return 100.0
    return sacrebleu.sentence_chrf(text, [reference]).score


def standardised(values: list[float]) -> list[float]:
    """``(x - mean) / std`` (population std; all zeros when the values do not vary)."""
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


def with_reference(scored: list[dict], weight: float) -> list[dict]:
    """Rows whose ``rewards`` are ``z(reward model) + weight × z(fidelity × chrF vs the reference)``,
    standardised within each language (a transferred RM's scale drifts between languages, chrF's
    too); the RM's own scores are kept as ``rm_rewards``, the reference agreement as
    ``reference_scores``. ``weight == 0`` returns the rows unchanged. Every row needs a reference.

    Why: the transferred RM judges fluency, language and refusals, but barely whether a translation
    says what the source said (a fluent sentence on another subject scores well); a reference, where
    the prompts have one, says exactly that.
    """
    if weight == 0:
        return scored
    missing = [r["id"] for r in scored if not r.get("reference")]
    if missing:
        raise DataError(
            f"reference_weight={weight} needs a reference for every prompt; {len(missing)} have none "
            f"(first: {missing[0]}). Use prompts: ntrex or a JSONL with a 'reference' field, or reference_weight: 0"
        )
    refs = [[fidelity_chrf(c, r["reference"], r["lang"]) for c in r["completions"]] for r in scored]
    by_lang: dict[str, list[int]] = {}
    for i, r in enumerate(scored):
        by_lang.setdefault(r["lang"], []).append(i)
    out: list[dict] = [{} for _ in scored]
    for idx in by_lang.values():
        flat_rm = standardised([x for i in idx for x in scored[i]["rewards"]])
        flat_ref = standardised([x for i in idx for x in refs[i]])
        k = 0
        for i in idx:
            n = len(scored[i]["rewards"])
            combined = [a + weight * b for a, b in zip(flat_rm[k : k + n], flat_ref[k : k + n], strict=True)]
            out[i] = {
                **scored[i],
                "rewards": [round(x, 4) for x in combined],
                "rm_rewards": scored[i]["rewards"],
                "reference_scores": [round(x, 2) for x in refs[i]],
            }
            k += n
    return out


def best_of_n(scored: list[dict]) -> list[dict]:
    """The highest-reward sample of each prompt."""
    out = []
    for row in scored:
        best = max(range(len(row["rewards"])), key=row["rewards"].__getitem__)
        out.append(
            {
                **{k: row[k] for k in ("id", "lang", "prompt")},
                "completion": row["completions"][best],
                "reward": row["rewards"][best],
                "reference": row.get("reference"),
            }
        )
    return out


# --- prompts --------------------------------------------------------------------------------------


def target_prompts(
    source: str,
    languages: list[str],
    per_language: int,
    split: str,
    seed: int = 0,
    instruction_languages: dict[str, float] | None = None,
) -> list[dict]:
    """``[{"id", "lang", "prompt": messages, "reference": str | None}]``, ``per_language`` per language.

    ``source="ntrex"``: translation requests (English text; German for English targets) from the NTREX
    documents of ``split``, with the human reference, each written in English, the source or the target
    language as ``instruction_languages`` weighs them (translation_following's keys; default: the target
    language). Otherwise a JSONL file of ``{"prompt": messages or str, "lang"}`` rows (e.g.
    data_recipes' preference_prompts.jsonl).
    """
    if source == "ntrex":
        return _ntrex_prompts(languages, per_language, split, seed, instruction_languages or {"tgt": 1.0})

    rows = read_records(source, required=("prompt", "lang"))
    out = []
    for row in rows:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if row["lang"] in languages:
            out.append(
                {
                    "id": f"{Path(source).name}:{row['_line']}",
                    "lang": row["lang"],
                    "prompt": prompt,
                    "reference": row.get("reference"),
                }
            )
    picked = _cap(out, languages, per_language, seed)
    if not picked:
        raise DataError(f"{source}: no prompts in languages {', '.join(languages)}")
    return picked


def _ntrex_prompts(
    languages: list[str], per_language: int, split: str, seed: int, instruction_languages: dict[str, float]
) -> list[dict]:

    out = []
    for lang in languages:
        rng = random.Random(f"align-prompts-{lang}-{split}-{seed}")
        rows = [r for r in corpora.ntrex_pairs(pivot_for(lang, "en"), lang, split) if len(r["src"]) <= 240]
        rng.shuffle(rows)
        for row in rows[:per_language]:
            inst_lang = pick_instruction_language(instruction_languages, row["src_lang"], lang, rng)
            text = translation_prompt(row["src"], row["src_lang"], lang, inst_lang, rng)
            out.append(
                {
                    "id": f"{row['id']}:{lang}",
                    "lang": lang,
                    "prompt": [{"role": "user", "content": text}],
                    "reference": row["tgt"],
                }
            )
    return out


def _cap(rows: list[dict], languages: list[str], per_language: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for lang in languages:
        items = [r for r in rows if r["lang"] == lang]
        rng.shuffle(items)
        out += items[:per_language]
    return out


# --- sampling + scoring ---------------------------------------------------------------------------


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_scored(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score_completions(
    prompts: list[dict], completions: list[list[str]], scorer, digits: int | None = None
) -> list[dict]:
    """``{**prompt, "completions", "rewards"}`` per prompt: every completion scored in one flat
    batch by ``scorer`` (a ``RewardScorer``), the rewards cut back per prompt (rounded to ``digits``)."""
    flat_prompts = [p["prompt"] for p, outs in zip(prompts, completions, strict=True) for _ in outs]
    rewards = scorer.score(flat_prompts, [c for outs in completions for c in outs], progress=True)
    rows, i = [], 0
    for p, outs in zip(prompts, completions, strict=True):
        cut = rewards[i : i + len(outs)]
        rows.append(
            {**p, "completions": outs, "rewards": cut if digits is None else [round(r, digits) for r in cut]}
        )
        i += len(outs)
    return rows


def sample_and_score(prompts: list[dict], cfg, scored_path: Path, scorer=None) -> list[dict]:
    """``n`` samples per prompt from the policy, each scored; cached in ``scored_path``.

    Two keys: the samples' (prompts, policy and its weights, sampling) and the scores' (that plus
    the reward model's weights). A retrained reward model rescores the cached samples; a retrained
    policy samples again.
    """
    settings = {
        "model": cfg.model, "adapter": cfg.adapter, "adapter_weights": fingerprint(cfg.adapter), "n": cfg.n,
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
        "seed": cfg.seed, "ids": [p["id"] for p in prompts],
        "prompts": settings_key({"messages": [p["prompt"] for p in prompts]}),
    }  # fmt: skip
    sample_key = settings_key(settings)
    settings.update(reward_model=cfg.reward_model, reward_weights=fingerprint(cfg.reward_model))
    key = settings_key(settings)
    meta_path = scored_path.with_suffix(".meta.json")
    meta = json.loads(meta_path.read_text()) if scored_path.is_file() and meta_path.is_file() else {}
    if meta.get("key") == key:
        training.say(f"reusing {scored_path} (same prompts, policy, reward model and sampling)")
        return read_scored(scored_path)
    if meta.get("sample_key") == sample_key:
        cached = {r["id"]: r["completions"] for r in read_scored(scored_path)}
        completions = [cached[p["id"]] for p in prompts]
        training.say(f"reusing the samples in {scored_path}; the reward model changed: rescoring")
    else:
        completions = _sample(prompts, cfg)
    if scorer is None:
        scorer = RewardScorer(cfg.reward_model, batch_size=cfg.score_batch_size)
    rows = score_completions(prompts, completions, scorer, digits=4)
    scored_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = scored_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(scored_path)
    meta_path.write_text(
        json.dumps(
            {
                "key": key,
                "sample_key": sample_key,
                "settings": {k: v for k, v in settings.items() if k != "ids"},
            }
        )
    )
    training.say(f"scored generations: {scored_path}")
    return rows


def _sample(prompts: list[dict], cfg) -> list[list[str]]:

    training.say(f"sampling {cfg.n} × {len(prompts)} prompts from {cfg.adapter or cfg.model}")
    completions = generation.generate(
        cfg.model, [p["prompt"] for p in prompts], adapter=cfg.adapter, n=cfg.n, temperature=cfg.temperature,
        top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, backend=cfg.backend, desc="align sample",
    )  # fmt: skip
    generation.release()  # the policy leaves memory before the reward model comes in
    return completions


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
