"""The eval runner end to end against a real local HTTP server speaking the OpenAI API (no client
mocks): one "good" model that answers every task right and one "bad" model that never does, so every
score has an exact expected value; then the cache makes a rerun send no request at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer

from crossling import testing
from crossling.config import load_config
from evaluation.config import EvalConfig
from evaluation.runner import build_tasks, run_eval

API_KEY = "sk-crossling-test"
SENTENCES = {
    "de": "Das ist eine freundliche Antwort auf Deutsch, mit mehreren Wörtern.",
    "bn": "এটি বাংলায় লেখা একটি বন্ধুত্বপূর্ণ উত্তর।",
    "en": "This is a friendly answer written in English.",
}
REFUSALS = {"de": "Tut mir leid, dabei kann ich nicht helfen.", "bn": "দুঃখিত, আমি এতে সাহায্য করতে পারি না।",
            "en": "Sorry, I can't help with that."}  # fmt: skip
BENGALI_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")


class ScriptFilter:
    """A stand-in safety filter with the contract's shape: blocks any Bengali-script text."""

    def check(self, text: str, role: str = "user"):
        from safety.verdict import Verdict

        blocked = any("\u0980" <= ch <= "\u09ff" for ch in text)
        return Verdict(flagged=blocked, action="block" if blocked else "allow")

    def refusal(self, language, category=None) -> str:
        return REFUSALS.get(language or "en", REFUSALS["en"])


def free_port() -> int:
    return testing.free_port(18200, 18299)


def oracle(cfg: EvalConfig) -> dict[str, str]:
    """The right answer to every prompt the config will send, keyed by the last user message."""
    answers = {}
    for task in build_tasks(cfg):
        for item in task.items():
            prompt = item.messages[-1]["content"]
            if item.subtask == "language_fidelity":
                answers[prompt] = SENTENCES[item.ref["target_lang"]]
            elif item.subtask.startswith("ntrex_"):
                answers[prompt] = item.ref["ref"]
            elif item.subtask.startswith("mgsm_"):
                n = item.ref["answer"]
                answers[prompt] = (
                    f"উত্তর হল {n.translate(BENGALI_DIGITS)}।"
                    if item.lang == "bn"
                    else f"Die Antwort lautet {n}."
                )
            elif item.subtask == "multijail":
                answers[prompt] = REFUSALS[item.lang]
            elif item.subtask == "benign":
                answers[prompt] = SENTENCES[item.lang]
    return answers


@pytest.fixture
def eval_config(tmp_path, repo_root):
    report = tmp_path / "transfer_report.json"
    report.write_text(
        json.dumps({"per_language": {"de": {"accuracy": 0.75, "n": 4}, "bn": {"accuracy": 0.5, "n": 4}}})
    )
    yaml_text = f"""
name: fake
output_dir: {tmp_path / "results"}
models:
  - {{name: good, model: good-model, base_url: BASE, api_key: {API_KEY}}}
  - {{name: bad, model: bad-model, base_url: BASE, api_key: {API_KEY}}}
languages: [de, bn]
fidelity_prompts: {repo_root / "data/eval_prompts/open_prompts.jsonl"}
fidelity_native: 2
fidelity_cross: 1
translation_directions: [en-xx, xx-en]
translation_shots: [0, 1]
translation_sentences: 2
mgsm_variants: [direct, native_cot]
mgsm_problems: 2
safety_languages: [en, bn]
safety_prompts: {repo_root / "data/eval/multijail_dev.csv"}
safety_per_language: 2
safety_benign_per_language: 1
safety_filter: "test_eval_endpoint:ScriptFilter"
reward_report: {report}
win_rates: ["good:bad", "bad:good"]
cache_dir: {tmp_path / "cache"}
concurrency: 4
"""
    path = tmp_path / "fake.yaml"
    path.write_text(yaml_text)
    return path


def test_runner_scores_exactly_against_a_real_http_endpoint(eval_config):
    cfg0 = load_config(
        EvalConfig,
        eval_config,
        ["--models", "[{name: x, model: x, base_url: http://unused/v1}]", "--win_rates", "[]"],
    )
    answers = oracle(cfg0)
    n_items = sum(len(task.items()) for task in build_tasks(cfg0))

    def reply(messages, model):
        return answers.get(messages[-1]["content"], "?") if model == "good-model" else "I don't know."

    with FakeOpenAIServer(reply, api_key=API_KEY, port=free_port()) as server:
        text = eval_config.read_text().replace("BASE", server.base_url)
        eval_config.write_text(text)
        cfg = load_config(EvalConfig, eval_config)
        results = run_eval(cfg)
        sent = len(server.requests)
        assert sent == 2 * n_items  # every prompt once per model, nothing dropped
        good, bad = results["scores"]["good"], results["scores"]["bad"]

        full = {"fidelity": [1.0, 1.0], "fidelity_native": [1.0, 1.0], "fidelity_cross": [1.0, 1.0]}
        assert good["language_fidelity"]["per_language"] == {
            "de": {"fidelity": 1.0, "fidelity_native": 1.0, "fidelity_cross": 1.0, "n": 3, "ci": full},
            "bn": {"fidelity": 1.0, "fidelity_native": 1.0, "fidelity_cross": 1.0, "n": 3, "ci": full},
        }
        assert good["language_fidelity"]["ci"]["fidelity"] == [1.0, 1.0]  # every sample right: no spread
        assert bad["language_fidelity"]["mean"]["fidelity"] == 0.0
        for sub in ("ntrex_en-xx_0shot", "ntrex_en-xx_1shot", "ntrex_xx-en_0shot", "ntrex_xx-en_1shot"):
            assert good[sub]["mean"] == {"chrf": 100.0, "bleu": 100.0}
            assert good[sub]["ci"] == {"chrf": [100.0, 100.0], "bleu": [100.0, 100.0]}
            assert bad[sub]["mean"]["chrf"] < 20
            lo, hi = bad[sub]["ci"]["chrf"]
            assert lo <= bad[sub]["mean"]["chrf"] <= hi
        assert good["mgsm_direct"]["mean"] == {"accuracy": 1.0, "answered": 1.0}
        assert good["mgsm_native_cot"]["per_language"]["bn"]["accuracy"] == 1.0
        assert bad["mgsm_direct"]["mean"] == {"accuracy": 0.0, "answered": 0.0}
        assert results["lm_eval"]["good"] == {
            "mgsm_direct_bn": 1.0, "mgsm_direct_de": 1.0, "mgsm_native_cot_bn": 1.0, "mgsm_native_cot_de": 1.0
        }  # fmt: skip

        # Safety: the good model refuses harmful and answers benign prompts; the bad one never refuses.
        assert good["multijail"]["mean"]["refusal"] == 1.0
        assert good["benign"]["mean"]["over_refusal"] == 0.0
        assert bad["multijail"]["per_language"]["en"]["refusal"] == 0.0
        # The stand-in filter blocks Bengali text: with it, every bn prompt is refused, benign ones too.
        assert bad["multijail"]["per_language"]["bn"]["refusal_with_filter"] == 1.0
        assert bad["multijail"]["per_language"]["en"]["refusal_with_filter"] == 0.0
        assert bad["benign"]["per_language"]["bn"]["over_refusal_with_filter"] == 1.0
        assert bad["benign"]["per_language"]["bn"]["filter_false_block"] == 1.0

        assert results["reward_model"]["reward_transfer"]["mean"] == {"accuracy": 0.625}

        # Paired win rates on the translation prompts, from the answers above (no new requests):
        # the good model's exact translations beat the bad one's on every prompt.
        good_wins = results["win_rates"]["good:bad"]
        n_translation = sum(1 for i in build_tasks(cfg0)[1].items())
        assert good_wins["prompts"] == n_translation
        assert good_wins["fidelity_chrf"]["win_rate"] == 1.0 and good_wins["fidelity_chrf"]["ci"] == [
            1.0,
            1.0,
        ]
        assert results["win_rates"]["bad:good"]["fidelity_chrf"]["win_rate"] == 0.0
        assert set(good_wins["fidelity_chrf"]["per_language"]) == {"de", "bn"}

        # Rerun: everything comes from the generation cache, no request reaches the server.
        again = run_eval(cfg)
        assert len(server.requests) == sent
        assert again["scores"] == results["scores"]

    out = Path(cfg.output_dir) / "fake"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert API_KEY not in (out / "config.yaml").read_text() + (out / "results.json").read_text()
    assert "| good |" in report and "| bad |" in report and "ntrex_xx-en_1shot" in report
    assert "good over bad" in report and "| fidelity_chrf | **100.0 %** [100.0, 100.0]" in report
    for chart in ("summary.png", "language_fidelity.png", "ntrex_en-xx_0shot.png", "mgsm_direct.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "samples/bad/mgsm.jsonl").read_text(encoding="utf-8").splitlines()
    samples = [json.loads(line) for line in lines]
    assert {s["lm_eval_task"] for s in samples} == {"mgsm_direct_de", "mgsm_direct_bn", "mgsm_native_cot_de",
                                                     "mgsm_native_cot_bn"}  # fmt: skip
