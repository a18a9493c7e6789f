"""compare-guards: the rows neither file trained on, recall at benign FPR points, paired intervals."""

from __future__ import annotations

import numpy as np
import pytest

from crossling.errors import ConfigError
from safety.guard_compare import compare_scores, file_split, hash_split, neither_trained
from safety.guard_model import GUARD_PATH, read_meta
from safety.guard_train import GuardTrainConfig, split_rows


def _rows(n: int, extra: str = "") -> list[dict]:
    return [{"group": f"{extra}g{i}", "text": f"{extra}text {i}", "label": "harmful" if i % 3 == 0 else "benign",
             "lang": "en", "source": "chatter" if i % 50 == 0 else "seed"} for i in range(n)]  # fmt: skip


def test_neither_trained_leaves_out_what_either_file_trained_on() -> None:
    cfg_a, cfg_b = GuardTrainConfig(seed=0), GuardTrainConfig(seed=1)
    rows_a, rows_b = _rows(3000), _rows(3000) + _rows(600, extra="new-")  # b trained with more data
    common = neither_trained(rows_a, hash_split(cfg_a), rows_b, hash_split(cfg_b))
    trained = {rows_a[i]["text"] for i in split_rows(rows_a, cfg_a)[0]}
    trained |= {rows_b[i]["text"] for i in split_rows(rows_b, cfg_b)[0]}
    texts = [r["text"] for r in common]
    assert common and len(texts) == len(set(texts)) and not trained & set(texts)
    assert all(r["source"] != "chatter" for r in common)
    assert any(t.startswith("new-") for t in texts)  # rows a never saw, held out by b, count


def test_compare_scores_finds_the_better_file() -> None:
    rng = np.random.default_rng(0)
    harmful = np.arange(600) % 2 == 0
    a = rng.uniform(size=600)  # no better than chance
    b = np.where(harmful, rng.uniform(0.5, 1.0, 600), rng.uniform(0.0, 0.6, 600))
    out = compare_scores(a, b, harmful, [0.01, 0.05], bootstrap=200)
    assert out[0.05]["b"] > out[0.05]["a"] + 0.3
    assert out[0.05]["diff_ci"][0] > 0  # the interval of b - a excludes 0
    same = compare_scores(b, b, harmful, [0.05], bootstrap=50)[0.05]
    assert same["a"] == same["b"] and same["diff_ci"] == [0.0, 0.0]


def _save(path, info: dict) -> None:
    from safety.categories import CATEGORY_IDS
    from safety.guard_model import GuardMeta, build_net, save_guard

    meta = GuardMeta(n_layers=1, frozen=0, max_tokens=32, categories=list(CATEGORY_IDS), threshold=0.5,
                     thresholds={}, info=info)  # fmt: skip
    save_guard(build_net(1, len(CATEGORY_IDS)), meta, path)


def test_a_file_without_a_recorded_split_is_refused(tmp_path) -> None:
    _save(tmp_path / "g.npz", {"config": {}})
    with pytest.raises(ConfigError, match="retrain it"):
        file_split(tmp_path / "g.npz")


def test_a_file_with_a_recorded_split_gives_back_its_config_and_split(tmp_path) -> None:
    from dataclasses import asdict

    from safety.guard_train import SPLIT

    cfg = GuardTrainConfig(n_layers=1, frozen=0, seed=7, prompt_sets=["native", "direct"])
    _save(tmp_path / "g.npz", {"config": {**asdict(cfg), "retired_field": 1}, "split": SPLIT})
    got, split = file_split(tmp_path / "g.npz")
    assert got == cfg  # fields a later version dropped are ignored
    rows = _rows(500)
    tr, cal, chk = split_rows(rows, cfg)
    assert split(rows) == (tr, cal + chk)


def test_a_file_with_listed_held_out_groups_splits_by_the_list(tmp_path) -> None:
    _save(tmp_path / "g.npz", {"config": {"seed": 0}, "held_out_groups": ["g1", "g2"]})
    _, split = file_split(tmp_path / "g.npz")
    rows = _rows(5) + _rows(2, extra="new-")  # groups the file never saw count as trained on
    assert split(rows) == ([0, 3, 4, 5, 6], [1, 2])


def test_the_shipped_file_records_its_held_out_groups() -> None:
    """It drew its split at random before the hash split; the list makes it comparable."""
    cfg, split = file_split(GUARD_PATH)
    assert cfg.n_layers == 6 and cfg.frozen == 2
    held = read_meta(GUARD_PATH).info["held_out_groups"]
    assert len(held) == 3504
    rows = [{"group": held[0]}, {"group": "a group it never saw"}]
    assert split(rows) == ([1], [0])  # split by the list, not by the hash
