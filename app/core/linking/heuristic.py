"""Entities and relations without an LLM: capitalised names, acronyms and dates found in a
text, and a weighted `related_to` edge between two entities named in one fact.

Used when no chat provider is configured (and for infer=false), so the offline product
still links entities and builds a graph. It over-collects a little; the retrieval boosts
decay for entities linked to many memories, which is where its mistakes end up. Its edges
are marked `origin: heuristic` and weigh less the more entities a fact names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.text import STOP_WORDS

ENTITY_TYPES = ("person", "place", "organization", "product", "event", "date", "other")
MAX_ENTITIES_PER_TEXT = 12
MAX_ENTITY_CHARS = 100

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(
    rf"\b(\d{{1,2}}\s+(?:{_MONTHS})\.?(?:,?\s+\d{{4}})?|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    rf"|\d{{4}}-\d{{2}}-\d{{2}}|(?:19|20)\d{{2}})\b",
    re.IGNORECASE,
)
_CALENDAR_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday".split() + _MONTHS.split("|")
)
# A run of capitalised words (allowing "of", "the", "de" inside), e.g. "Bank of America".
_NAME = re.compile(r"\b[A-Z][\w'&.-]*(?:\s+(?:(?:of|the|de|la|van|von|and)\s+)?[A-Z][\w'&.-]*)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPEAKER_PREFIX = re.compile(r"^\s*[A-Z][\w.-]{0,40}:\s+")


# A relation is a short snake_case verb phrase: "works at" -> works_at.
MAX_RELATION_CHARS = 48
MAX_RELATIONS_PER_TEXT = 16
# Co-mention edges: among at most this many (non-date) entities of one fact.
MAX_CO_MENTIONED = 6
HEURISTIC_RELATION = "related_to"
_NOT_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class FoundEntity:
    text: str
    entity_type: str
    # The model's word that this name is another name of an entity (same type): "Bob" -> "Robert Smith".
    same_as: str | None = None


@dataclass(frozen=True)
class FoundRelation:
    """`source --relation--> target`, by entity names as the fact says them."""

    source: str
    relation: str
    target: str
    origin: str = "model"
    weight: float = 1.0


def normalise_relation(raw: str) -> str | None:
    """A short snake_case verb phrase, or None when nothing usable is left ("Works at!" -> works_at)."""
    words = [w for w in _NOT_WORD.split(raw.lower()) if w][:6]
    name = "_".join(words)[:MAX_RELATION_CHARS].strip("_")
    return name if name and name[0].isalpha() else None


def co_mention_relations(entities: list[FoundEntity]) -> list[FoundRelation]:
    """A `related_to` edge between every two entities one fact names (dates aside), weighted
    1/(n-1) for n entities, so a sentence naming many things links each pair weakly."""
    names = list(dict.fromkeys(e.text for e in entities if e.entity_type != "date"))[:MAX_CO_MENTIONED]
    if len(names) < 2:
        return []
    weight = 1.0 / (len(names) - 1)
    return [
        FoundRelation(a, HEURISTIC_RELATION, b, origin="heuristic", weight=weight)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if a.lower() != b.lower()
    ]


def extract_entities(text: str) -> list[FoundEntity]:
    found: dict[tuple[str, str], FoundEntity] = {}

    def keep(value: str, entity_type: str) -> None:
        value = value.strip(" .,'-")
        if len(value) < 2 or len(value) > MAX_ENTITY_CHARS or value.lower() in STOP_WORDS:
            return
        found.setdefault((value.lower(), entity_type), FoundEntity(value, entity_type))

    for match in _DATE.finditer(text):
        keep(match.group(1), "date")
    body = _SPEAKER_PREFIX.sub("", text)
    for sentence in _SENTENCE.split(body):
        for match in _NAME.finditer(sentence):
            name = match.group(0)
            words = name.split()
            # A single capitalised word opening a sentence is usually just capitalisation.
            if match.start() == 0 and len(words) == 1 and not name.isupper():
                continue
            if name.lower() in _CALENDAR_WORDS or _DATE.fullmatch(name):
                continue
            if words[0].lower() in STOP_WORDS and len(words) > 1:
                name = " ".join(words[1:])
            keep(name, "other")
    return list(found.values())[:MAX_ENTITIES_PER_TEXT]
