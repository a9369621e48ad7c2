"""Relations in the model's answer (tolerant parsing) and the heuristic's co-mention edges."""

from __future__ import annotations

from app.core.linking.heuristic import (
    MAX_RELATIONS_PER_TEXT,
    FoundEntity,
    co_mention_relations,
    normalise_relation,
)
from app.memories.decisions import read_decisions


def test_relation_names_become_short_snake_case_verb_phrases() -> None:
    assert normalise_relation("Works at") == "works_at"
    assert normalise_relation("  sister-of!! ") == "sister_of"
    assert normalise_relation("LIVES_IN") == "lives_in"
    assert normalise_relation("???") is None
    assert normalise_relation("2nd cousin of") is None  # must start with a letter
    long = normalise_relation("one two three four five six seven eight")
    assert long == "one_two_three_four_five_six"


def test_each_fact_carries_its_relations_and_mem0_key_names_are_read_too() -> None:
    answer = {
        "facts": [
            {
                "text": "Works at Acme",
                "event": "ADD",
                "entities": [{"text": "Acme", "type": "organization"}, {"text": "Bob", "same_as": "Robert"}],
                "relations": [
                    {"source": "user", "relation": "works at", "target": "Acme"},
                    {"source": "Bob", "relationship": "COLLEAGUE_OF", "destination": "user"},
                    {"source": "user", "relation": "", "target": "Acme"},  # no verb: dropped
                    {"source": "user", "relation": "likes"},  # no target: dropped
                    "not an object",
                ],
            },
            {"text": "Likes tea", "event": "ADD"},
            {"text": "Likes coffee", "event": "ADD", "relations": []},
        ]
    }
    parsed = read_decisions(answer, {}, default_event="ADD")
    first, second, third = parsed.decisions
    assert [(r.source, r.relation, r.target, r.origin) for r in first.relations or []] == [
        ("user", "works_at", "Acme", "model"),
        ("Bob", "colleague_of", "user", "model"),
    ]
    assert [(e.text, e.same_as) for e in first.entities] == [("Acme", None), ("Bob", "Robert")]
    # No "relations" key: None (the heuristic links the entities); an empty list: no relation.
    assert second.relations is None
    assert third.relations == []
    assert parsed.skipped == []


def test_a_model_flooding_relations_is_cut_at_the_limit() -> None:
    many = [{"source": "user", "relation": f"r{i}", "target": "x"} for i in range(100)]
    (decision,) = read_decisions(
        {"facts": [{"text": "t", "relations": many}]}, {}, default_event="ADD"
    ).decisions
    assert len(decision.relations or []) == MAX_RELATIONS_PER_TEXT


def test_co_mention_links_every_two_named_entities_weighted_by_how_many_there_are() -> None:
    found = [
        FoundEntity("Maria", "other"),
        FoundEntity("Lisbon", "other"),
        FoundEntity("May 2024", "date"),
        FoundEntity("Tomas", "other"),
    ]
    edges = co_mention_relations(found)
    assert {(r.source, r.target) for r in edges} == {
        ("Maria", "Lisbon"),
        ("Maria", "Tomas"),
        ("Lisbon", "Tomas"),
    }
    assert {(r.relation, r.origin, r.weight) for r in edges} == {("related_to", "heuristic", 0.5)}
    assert co_mention_relations([FoundEntity("Maria", "other")]) == []
    assert co_mention_relations([FoundEntity("Maria", "other"), FoundEntity("maria", "other")]) == []
