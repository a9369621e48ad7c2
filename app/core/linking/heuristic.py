"""Entities without an LLM: capitalised names, acronyms and dates found in a text.

Used when no chat provider is configured (and for infer=false), so the offline product
still links entities. It over-collects a little; the retrieval boost decays for entities
linked to many memories, which is where its mistakes end up.
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


@dataclass(frozen=True)
class FoundEntity:
    text: str
    entity_type: str


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
