"""Mixing recipes and languages: temperature sampling (p ∝ n^α) or fixed weights, deterministic by seed.

A pool is the set of rows of one (recipe, language) cell. Recipe shares are the fixed
``recipe_weights`` when given, else ∝ N_recipe^α; within a recipe, languages get ∝ n_lang^α (α = 1:
proportional to size; α → 0: uniform, which lifts low-resource languages — XLM-R and mT5 used
α ≈ 0.3); ``language_weights`` then multiply a language's share inside every recipe (``{hi: 2}``:
Hindi gets about twice its rows, taken from the other languages). A cell never gives more rows than
it has (no repeats); what it cannot give is handed to the other cells in proportion to their shares.
Not here: building or filtering rows.
"""

from __future__ import annotations

import random
from collections import defaultdict

Cell = tuple[str, str]  # (recipe, lang)


def temperature_weights(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    """``{key: n^α / Σ n^α}`` over keys with n > 0."""
    powered = {k: float(n) ** alpha for k, n in sizes.items() if n > 0}
    total = sum(powered.values())
    return {k: v / total for k, v in powered.items()} if total else {}


def recipe_weight(weights: dict[str, float], recipe: str) -> float:
    """A recipe's fixed weight; the user's own files (``user:<name>``) share the ``user`` weight."""
    if recipe in weights:
        return weights[recipe]
    return weights.get("user", 0.0) if recipe.startswith("user:") else 0.0


def cell_shares(
    sizes: dict[Cell, int],
    alpha: float,
    recipe_weights: dict[str, float] | None = None,
    language_weights: dict[str, float] | None = None,
) -> dict[Cell, float]:
    """Target share of each (recipe, lang) cell in the mix; shares sum to 1."""
    per_recipe: dict[str, dict[str, int]] = defaultdict(dict)
    for (recipe, lang), n in sizes.items():
        if n > 0:
            per_recipe[recipe][lang] = n
    if recipe_weights:
        raw = {r: recipe_weight(recipe_weights, r) for r in per_recipe}
        total = sum(raw.values())
        recipe_share = {r: w / total for r, w in raw.items()} if total else {}
    else:
        recipe_share = temperature_weights({r: sum(v.values()) for r, v in per_recipe.items()}, alpha)
    shares = {}
    for recipe, langs in per_recipe.items():
        inside = temperature_weights(langs, alpha)
        if language_weights:
            inside = {lang: p * language_weights.get(lang, 1.0) for lang, p in inside.items()}
            total = sum(inside.values())
            inside = {lang: p / total for lang, p in inside.items()} if total else {}
        for lang, p in inside.items():
            if recipe_share.get(recipe, 0) > 0:
                shares[(recipe, lang)] = recipe_share[recipe] * p
    return shares


def quotas(sizes: dict[Cell, int], total: int, shares: dict[Cell, float]) -> dict[Cell, int]:
    """Integer row counts per cell summing to min(total, available), capped by cell size.

    Water-filling: give each open cell its share of what is left; cells that hit their size close
    and the remainder goes round again. Largest-remainder rounding keeps the sum exact.
    """
    budget = min(total, sum(sizes.get(c, 0) for c in shares))
    alloc = dict.fromkeys(shares, 0)
    open_cells = {c for c in shares if sizes.get(c, 0) > 0}
    while budget - sum(alloc.values()) > 0 and open_cells:
        left = budget - sum(alloc.values())
        weight = sum(shares[c] for c in open_cells)
        exact = {c: left * shares[c] / weight for c in open_cells}
        give = {c: int(exact[c]) for c in open_cells}
        rest = left - sum(give.values())
        for c in sorted(open_cells, key=lambda c: (exact[c] - give[c], c), reverse=True)[:rest]:
            give[c] += 1
        for c in list(open_cells):
            room = sizes[c] - alloc[c]
            alloc[c] += min(give[c], room)
            if alloc[c] >= sizes[c]:
                open_cells.discard(c)
    return {c: n for c, n in alloc.items() if n > 0}


def mix(
    pools: dict[Cell, list[dict]],
    total: int,
    alpha: float,
    seed: int,
    recipe_weights: dict[str, float] | None = None,
    language_weights: dict[str, float] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(chosen rows in a shuffled order, rows left over); deterministic for a given seed."""
    sizes = {c: len(rows) for c, rows in pools.items()}
    want = quotas(sizes, total, cell_shares(sizes, alpha, recipe_weights, language_weights))
    chosen, rest = [], []
    for cell in sorted(pools):
        rows = list(pools[cell])
        # one RNG per cell: a change in one recipe's rows does not reshuffle the others
        random.Random(f"mix-{seed}-{cell[0]}-{cell[1]}").shuffle(rows)
        k = want.get(cell, 0)
        chosen += rows[:k]
        rest += rows[k:]
    random.Random(f"mix-{seed}").shuffle(chosen)
    return chosen, rest
