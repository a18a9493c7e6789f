"""Mixing: temperature sampling and fixed weights, capped by what each cell has, deterministic."""

from __future__ import annotations

from data_recipes import mixing


def test_temperature_lifts_small_languages():
    w1 = mixing.temperature_weights({"en": 1000, "sw": 10}, alpha=1.0)
    w03 = mixing.temperature_weights({"en": 1000, "sw": 10}, alpha=0.3)
    assert abs(w1["sw"] - 10 / 1010) < 1e-9 and w03["sw"] > 3 * w1["sw"]
    assert abs(sum(w03.values()) - 1) < 1e-9


def test_quotas_are_capped_and_sum_to_the_total():
    sizes = {("a", "en"): 1000, ("a", "sw"): 5, ("b", "en"): 100}
    shares = mixing.cell_shares(sizes, 0.0, {"a": 0.5, "b": 0.5})
    q = mixing.quotas(sizes, 300, shares)
    assert q[("a", "sw")] == 5 and sum(q.values()) == 300
    assert q[("b", "en")] == 100  # fixed weights: b gets its half (capped at 100... 150 wanted)
    assert mixing.quotas(sizes, 10_000, shares) == sizes  # asking for more than exists: everything


def test_mix_is_deterministic_by_seed_and_has_no_repeats():
    pools = {
        ("r", lang): [{"id": f"{lang}{i}", "recipe": "r", "lang": lang} for i in range(n)]
        for lang, n in (("en", 50), ("de", 20))
    }
    a, rest = mixing.mix(pools, 30, 0.3, seed=7)
    b, _ = mixing.mix(pools, 30, 0.3, seed=7)
    c, _ = mixing.mix(pools, 30, 0.3, seed=8)
    assert [r["id"] for r in a] == [r["id"] for r in b] != [r["id"] for r in c]
    assert len({r["id"] for r in a}) == 30 and len(a) + len(rest) == 70


def test_temperature_mode_shares_recipes_and_languages_by_size():
    sizes = {("big", "en"): 900, ("big", "sw"): 100, ("small", "en"): 100}
    uniform = mixing.cell_shares(sizes, 0.0)
    assert uniform[("big", "en")] == uniform[("big", "sw")] == 0.25 and uniform[("small", "en")] == 0.5
    proportional = mixing.cell_shares(sizes, 1.0)
    assert abs(proportional[("big", "en")] - 900 / 1100) < 1e-9
    assert abs(sum(mixing.cell_shares(sizes, 0.3).values()) - 1) < 1e-9


def test_changing_one_cell_does_not_reshuffle_the_others():
    def pools(n_sw):
        return {
            ("r", "en"): [{"id": f"en{i}", "recipe": "r", "lang": "en"} for i in range(50)],
            ("s", "sw"): [{"id": f"sw{i}", "recipe": "s", "lang": "sw"} for i in range(n_sw)],
        }

    a, _ = mixing.mix(pools(20), 30, 0.3, seed=0, recipe_weights={"r": 0.5, "s": 0.5})
    b, _ = mixing.mix(pools(25), 30, 0.3, seed=0, recipe_weights={"r": 0.5, "s": 0.5})
    assert {r["id"] for r in a if r["lang"] == "en"} == {r["id"] for r in b if r["lang"] == "en"}


def test_language_weights_lift_a_language_inside_every_recipe():
    sizes = {(r, lang): 1000 for r in ("a", "b") for lang in ("de", "hi", "sw")}
    plain = mixing.quotas(sizes, 600, mixing.cell_shares(sizes, 0.0, {"a": 0.5, "b": 0.5}))
    lifted = mixing.quotas(sizes, 600, mixing.cell_shares(sizes, 0.0, {"a": 0.5, "b": 0.5}, {"hi": 2}))
    assert plain[("a", "hi")] == plain[("a", "de")] == 100
    assert lifted[("a", "hi")] == lifted[("b", "hi")] == 150 and lifted[("a", "de")] == 75
    assert sum(lifted.values()) == 600  # taken from the other languages, recipe shares kept
    assert sum(n for (r, _), n in lifted.items() if r == "a") == 300
