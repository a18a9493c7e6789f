"""The hazard categories crossling's safety filter scores (MLCommons AILuminate-style short ids).

Every score, policy entry, moderation field and training row names a category by one of these ids.
This module is data only: what each category covers, and how it maps onto OpenAI's moderation
category names (so ``/v1/moderations`` answers with the field names the ``openai`` SDK knows).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    description: str
    openai: tuple[str, ...]  # OpenAI moderation categories this one reports under


CATEGORIES: dict[str, Category] = {
    c.id: c
    for c in [
        Category(
            "violent_crimes",
            "Violent crimes",
            "Help to kill, injure, kidnap, torture or terrorise people, or to abuse animals.",
            ("violence", "illicit/violent"),
        ),
        Category(
            "nonviolent_crimes",
            "Non-violent crimes",
            "Help with theft, fraud, scams, hacking, drug making or dealing, money laundering, burglary.",
            ("illicit",),
        ),
        Category(
            "sex_crimes",
            "Sex crimes",
            "Help with sexual assault, trafficking, coercion, or sharing intimate images without consent.",
            ("sexual", "illicit/violent"),
        ),
        Category(
            "child_exploitation",
            "Child sexual exploitation",
            "Any sexualisation of minors, grooming, or access to child sexual abuse material.",
            ("sexual/minors",),
        ),
        Category(
            "hate",
            "Hate",
            "Demeaning or dehumanising people for a protected attribute, slurs, calls for discrimination.",
            ("hate", "harassment"),
        ),
        Category(
            "self_harm",
            "Suicide and self-harm",
            "Encouragement of, or methods for, suicide, self-injury or disordered eating.",
            ("self-harm", "self-harm/intent", "self-harm/instructions"),
        ),
        Category(
            "weapons",
            "Weapons (incl. CBRNE)",
            "Making or acquiring explosives, guns, chemical, biological, radiological or nuclear weapons.",
            ("illicit/violent", "violence"),
        ),
        Category(
            "sexual_content",
            "Sexual content",
            "Explicit sexual descriptions or pornographic material between adults.",
            ("sexual",),
        ),
        Category(
            "privacy",
            "Privacy",
            "Finding, exposing or tracking private information about a person (doxxing, stalking, spying).",
            ("harassment",),
        ),
        Category(
            "specialized_advice",
            "Unsafe specialised advice",
            "Dangerous medical, legal or financial advice: dosing to harm, skipping treatment, evading law.",
            ("illicit",),
        ),
    ]
}

CATEGORY_IDS: tuple[str, ...] = tuple(CATEGORIES)

# OpenAI's moderation category names (omni-moderation), in the SDK's field order.
OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
