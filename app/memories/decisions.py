"""Reading the model's answer: tolerant JSON parsing and validation of each decision.

A malformed item is skipped and reported, never fatal and never silent. Candidate memories
are shown to the model under short temporary ids (m1, m2, ...) and mapped back here, so an
id the model invents, or copies from elsewhere, can never reach a memory outside the
candidates, let alone another owner's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app.core.linking.heuristic import (
    ENTITY_TYPES,
    MAX_ENTITIES_PER_TEXT,
    MAX_ENTITY_CHARS,
    MAX_RELATIONS_PER_TEXT,
    FoundEntity,
    FoundRelation,
    normalise_relation,
)
from app.core.schemas import MAX_MEMORY_CHARS, MEMORY_TYPES

EVENTS = ("ADD", "UPDATE", "DELETE", "NONE")
MAX_FACTS = 50
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class UnreadableAnswer(ValueError):
    """The model's answer holds no JSON object at all."""


@dataclass(frozen=True)
class Decision:
    event: str
    text: str
    target: UUID | None
    memory_type: str | None
    entities: list[FoundEntity]
    # Who said it, for memories stored verbatim from one message.
    actor_id: str | None = None
    role: str | None = None
    # None: the model said nothing about relations (the heuristic links the entities instead).
    relations: list[FoundRelation] | None = None


@dataclass
class ParsedAnswer:
    decisions: list[Decision] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in the text: bare, inside a code fence, or followed by prose."""
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = json.JSONDecoder().raw_decode(candidate[start:])
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise UnreadableAnswer("no JSON object in the model's answer")


def _entities(raw: Any) -> list[FoundEntity]:
    out: list[FoundEntity] = []
    if not isinstance(raw, list):
        return out
    for item in raw[:MAX_ENTITIES_PER_TEXT]:
        if isinstance(item, str):
            text, kind = item, "other"
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            text, kind = item["text"], str(item.get("type") or "other").lower()
        else:
            continue
        text = text.strip()
        if 1 < len(text) <= MAX_ENTITY_CHARS:
            out.append(FoundEntity(text, kind if kind in ENTITY_TYPES else "other", _alias_of(item)))
    return out


def _alias_of(item: Any) -> str | None:
    """The other name the model says this entity is ("Bob" -> "Robert Smith"), if any."""
    raw = item.get("same_as", item.get("alias_of")) if isinstance(item, dict) else None
    return raw.strip() if isinstance(raw, str) and 1 < len(raw.strip()) <= MAX_ENTITY_CHARS else None


def _end(item: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = item.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _relations(raw: Any) -> list[FoundRelation] | None:
    """The fact's relations; mem0's key names (relationship, destination) are read as well.
    An unusable relation is dropped, never the fact."""
    if raw is None:
        return None
    out: list[FoundRelation] = []
    for item in raw[:MAX_RELATIONS_PER_TEXT] if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        source = _end(item, "source", "subject", "from")
        target = _end(item, "target", "destination", "object", "to")
        verb = _end(item, "relation", "relationship", "predicate", "type")
        relation = normalise_relation(verb) if verb else None
        if source and target and relation:
            out.append(FoundRelation(source, relation, target))
    return out


def _read_fact(item: Any, temp_ids: dict[str, UUID], default_event: str) -> Decision | str:
    """One item of the answer as a decision, or the reason it is skipped."""
    if not isinstance(item, dict):
        return "not an object"
    event = str(item.get("event") or default_event).upper()
    text = item.get("text")
    text = text.strip() if isinstance(text, str) else ""
    raw_target = item.get("target", item.get("id"))
    named = raw_target not in (None, "")
    target = temp_ids.get(str(raw_target)) if named else None
    memory_type = str(item.get("memory_type") or "").upper() or None
    if event not in EVENTS:
        return f"unknown event {event!r}"
    if event in ("ADD", "UPDATE") and not text:
        return "no text"
    if len(text) > MAX_MEMORY_CHARS:
        return "text too long"
    if target is None and (event in ("UPDATE", "DELETE") or (named and event == "NONE")):
        return f"target {raw_target!r} is not one of the candidate memories"
    return Decision(
        event=event,
        text=text,
        target=target,
        memory_type=memory_type if memory_type in MEMORY_TYPES else None,
        entities=_entities(item.get("entities")),
        relations=_relations(item.get("relations")),
    )


def read_decisions(answer: dict[str, Any], temp_ids: dict[str, UUID], *, default_event: str) -> ParsedAnswer:
    """Validate the `facts` list item by item against the candidates' temporary ids."""
    parsed = ParsedAnswer()
    facts = answer.get("facts", answer.get("memory"))
    if not isinstance(facts, list):
        parsed.skipped.append({"index": None, "reason": "the answer has no 'facts' list"})
        return parsed
    for index, item in enumerate(facts[:MAX_FACTS]):
        read = _read_fact(item, temp_ids, default_event)
        if isinstance(read, Decision):
            parsed.decisions.append(read)
        else:
            parsed.skipped.append({"index": index, "reason": read})
    if len(facts) > MAX_FACTS:
        parsed.skipped.append({"index": MAX_FACTS, "reason": f"only the first {MAX_FACTS} facts are read"})
    return parsed
