"""The fusion formula of app/core/retrieval/service.py and the query-side text processing of app/text.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.core.retrieval.service import W_ENTITY, W_GRAPH, W_KEYWORD, W_SEMANTIC, Scored, fuse, passes
from app.text import MAX_TERMS, KeywordQuery, keyword_query, light_stem, query_phrases

ALL = {"semantic", "keyword", "entity"}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(
    id_: str,
    distance: float,
    bm25: float = 0.0,
    boost: float = 0.0,
    created: datetime = T0,
    graph: float = 0.0,
) -> dict[str, Any]:
    return {
        "id": id_,
        "distance": distance,
        "bm25": bm25,
        "entity_boost": boost,
        "graph_boost": graph,
        "created_at": created,
    }


def by_id(scored: list[tuple[float, dict[str, float], Any]]) -> dict[str, tuple[float, dict[str, float]]]:
    return {r["id"]: (score, parts) for score, parts, r in scored}


# fuse


def test_fuse_normalises_keyword_and_entity_by_their_maximum_over_the_candidates() -> None:
    scored = by_id(fuse([row("a", 0.5, bm25=4.0, boost=0.5), row("b", 0.5, bm25=1.0, boost=2.0)], ALL))
    assert scored["a"][1]["keyword"] == pytest.approx(1.0)
    assert scored["b"][1]["keyword"] == pytest.approx(0.25)
    assert scored["a"][1]["entity"] == pytest.approx(0.25)
    assert scored["b"][1]["entity"] == pytest.approx(1.0)


def test_fuse_weights_each_signal_and_divides_by_the_sum_of_the_enabled_weights() -> None:
    ((score, parts, _),) = fuse([row("a", 0.2, bm25=3.0, boost=1.0)], ALL)
    assert parts == pytest.approx({"semantic": 0.8, "keyword": 1.0, "entity": 1.0, "graph": 0.0})
    expected = (W_SEMANTIC * 0.8 + W_KEYWORD * 1.0 + W_ENTITY * 1.0) / (W_SEMANTIC + W_KEYWORD + W_ENTITY)
    assert score == pytest.approx(expected)


def test_fuse_semantic_is_one_minus_the_cosine_distance_clamped_to_the_unit_interval() -> None:
    scored = by_id(fuse([row("near", -0.0001), row("mid", 0.7), row("opposite", 1.6)], {"semantic"}))
    assert scored["near"][1]["semantic"] == 1.0
    assert scored["mid"][1]["semantic"] == pytest.approx(0.3)
    assert scored["opposite"][1]["semantic"] == 0.0


def test_fuse_with_only_the_semantic_signal_scores_the_plain_cosine_similarity() -> None:
    # A keyword or entity value on the row must not leak into a score that excludes those signals.
    ((score, _, _),) = fuse([row("a", 0.35, bm25=9.0, boost=3.0)], {"semantic"})
    assert score == pytest.approx(0.65)


def test_fuse_renormalises_over_the_enabled_signals() -> None:
    rows = [row("a", 0.4, bm25=2.0, boost=1.0), row("b", 0.1, bm25=1.0)]
    scored = by_id(fuse(rows, {"semantic", "keyword"}))
    assert scored["a"][0] == pytest.approx((W_SEMANTIC * 0.6 + W_KEYWORD * 1.0) / (W_SEMANTIC + W_KEYWORD))
    assert scored["b"][0] == pytest.approx((W_SEMANTIC * 0.9 + W_KEYWORD * 0.5) / (W_SEMANTIC + W_KEYWORD))
    (entity_only,) = fuse([row("c", 0.0, boost=0.4)], {"entity"})
    assert entity_only[0] == pytest.approx(1.0)


def test_fuse_scores_stay_in_the_unit_interval_whatever_the_raw_signals() -> None:
    rows = [
        row(str(i), d, bm25=b, boost=e)
        for i, (d, b, e) in enumerate([(0, 50, 7), (2, 0, 0), (-1, 1e-9, 1e9)])
    ]
    for signals in ({"semantic"}, {"keyword"}, {"entity"}, {"semantic", "entity"}, ALL):
        assert all(0.0 <= score <= 1.0 for score, _, _ in fuse(rows, signals))


def test_fuse_gives_keyword_only_hits_a_share_of_the_score() -> None:
    # A memory semantically unrelated to the query but holding its rare word still outranks
    # one with a middling similarity and no keyword hit.
    scored = fuse([row("middling", 0.7), row("rare-word", 1.0, bm25=5.0)], {"semantic", "keyword"})
    assert [r["id"] for _, _, r in scored] == ["rare-word", "middling"]


def test_fuse_returns_best_first_and_breaks_ties_by_recency_then_id() -> None:
    newer = T0 + timedelta(days=1)
    rows = [
        row("b-old", 0.5),
        row("z-new", 0.5, created=newer),
        row("a-old", 0.5),
        row("best", 0.1),
        row("a-new", 0.5, created=newer),
    ]
    order = [r["id"] for _, _, r in fuse(rows, {"semantic"})]
    assert order == ["best", "a-new", "z-new", "a-old", "b-old"]
    assert [r["id"] for _, _, r in fuse(list(reversed(rows)), {"semantic"})] == order


def test_fuse_of_no_candidates_is_empty() -> None:
    assert fuse([], ALL) == []


# keyword_query


def test_simple_config_drops_stop_words_and_matches_light_stems_as_prefixes() -> None:
    query = keyword_query(["what", "are", "the", "paintings", "she", "painted", "x", "in", "2023"], "simple")
    assert query == KeywordQuery(("painting", "paint", "2023"), prefix=True)
    assert query.tsquery == "'painting':* | 'paint':* | '2023':*"


def test_light_stem_keeps_at_least_four_characters() -> None:
    assert [light_stem(w) for w in ("painted", "glasses", "quickly", "runner", "cats", "used")] == [
        "paint",
        "glass",
        "quick",
        "runn",
        "cats",
        "used",
    ]


def test_simple_config_deduplicates_terms_after_stemming() -> None:
    query = keyword_query(["painting", "paints", "painted", "walls", "painting"], "simple")
    assert query.terms == ("paint", "wall")


def test_other_configs_use_their_lexemes_exactly_without_prefix_matching() -> None:
    query = keyword_query(["paint", "the", "cat", "paint"], "english")
    assert query == KeywordQuery(("paint", "the", "cat"), prefix=False)
    assert query.tsquery == "'paint' | 'the' | 'cat'"


def test_keyword_query_keeps_at_most_max_terms() -> None:
    lexemes = [f"term{i:03d}" for i in range(MAX_TERMS + 10)]
    assert len(keyword_query(lexemes, "simple").terms) == MAX_TERMS
    assert keyword_query(lexemes, "english").terms == tuple(lexemes[:MAX_TERMS])


def test_a_query_of_only_stop_words_has_no_tsquery() -> None:
    query = keyword_query(["what", "is", "it", "a"], "simple")
    assert query.terms == ()
    assert query.tsquery is None


def test_tsquery_quotes_a_term_holding_a_quote_or_backslash_so_it_stays_one_lexeme() -> None:
    assert KeywordQuery(("o'brien",), prefix=True).tsquery == "'o''brien':*"
    assert KeywordQuery(("it's' | 'x",), prefix=False).tsquery == "'it''s'' | ''x'"
    assert KeywordQuery(("back\\slash",), prefix=False).tsquery == "'back\\\\slash'"


# query_phrases


def test_query_phrases_are_lower_cased_word_ngrams_of_up_to_four_words() -> None:
    phrases = query_phrases("Did we visit New York City with Mary Jane Watson-Parker?")
    assert {"new york", "new york city", "we visit new york", "mary jane watson-parker"} <= set(phrases)
    assert "visit new york city with" not in phrases  # five words
    assert all(p == p.lower() for p in phrases)
    assert phrases == sorted(phrases)


def test_query_phrases_leave_out_lone_stop_words_but_keep_phrases_containing_them() -> None:
    phrases = query_phrases("the Bank of America")
    assert "the" not in phrases and "of" not in phrases
    assert {"bank of america", "the bank of america", "bank", "america"} <= set(phrases)


def test_query_phrases_keep_apostrophes_and_hyphens_inside_words() -> None:
    assert {"o'brien's", "co-op", "o'brien's co-op"} <= set(query_phrases("O'Brien's co-op!"))


def test_query_phrases_are_bounded() -> None:
    phrases = query_phrases(" ".join(f"word{i}" for i in range(200)))
    assert len(phrases) == 256
    assert max(len(p.split()) for p in phrases) == 4
    assert len(query_phrases("one two three four five", max_words=2)) == 9


def test_the_configured_signals_are_the_default_and_a_request_may_name_its_own() -> None:
    from app.search.service import effective_signals

    every = ("semantic", "keyword", "entity", "graph")
    assert effective_signals(None, every, entity_enabled=True) == {"semantic", "keyword", "entity", "graph"}
    assert effective_signals(None, every, entity_enabled=False) == {"semantic", "keyword", "graph"}
    assert effective_signals(["graph"], every, entity_enabled=True) == {"graph"}
    assert effective_signals(None, ("semantic",), entity_enabled=True) == {"semantic"}
    assert effective_signals(["keyword"], ("semantic",), entity_enabled=True) == {"keyword"}


def test_search_signals_setting_parses_from_the_environment_and_refuses_unknown_names() -> None:
    import pytest

    from app.settings import SettingsError, load_settings

    assert load_settings({"NUBASE_MEM_SEARCH_SIGNALS": "semantic, keyword"}).mem.search_signals == (
        "semantic",
        "keyword",
    )
    with pytest.raises(SettingsError, match="signals"):
        load_settings({"NUBASE_MEM_SEARCH_SIGNALS": "semantic,magic"})


# passes: which ranked rows are results


def scored(score: float, semantic: float) -> Scored:
    return Scored(score, {"semantic": semantic, "keyword": 0.0, "entity": 0.0, "graph": 0.0}, None)


def test_threshold_applies_to_the_semantic_similarity_not_the_fused_score() -> None:
    ((score, parts, _),) = fuse([row("a", 1 - 0.42)], ALL)
    assert score < 0.3  # the fused score of a purely semantic match of 0.42
    assert passes(Scored(score, parts, None), 0.3)
    assert not passes(Scored(score, parts, None), 0.5)


def test_a_keyword_hit_clears_a_threshold_by_its_fused_score() -> None:
    assert passes(scored(0.4, semantic=0.05), 0.3)
    assert not passes(scored(0.2, semantic=0.05), 0.3)


def test_a_row_scoring_zero_is_a_result_only_when_threshold_0_asks_for_everything() -> None:
    assert not passes(scored(0.0, semantic=0.0), None)
    assert passes(scored(0.01, semantic=0.01), None)
    assert passes(scored(0.0, semantic=0.0), 0.0)


def test_the_graph_signal_is_normalised_by_its_maximum_and_weighted_like_the_others() -> None:
    every = ALL | {"graph"}
    scored = by_id(fuse([row("a", 0.5, graph=0.2), row("b", 0.5, graph=0.8)], every))
    assert scored["a"][1]["graph"] == pytest.approx(0.25)
    assert scored["b"][1]["graph"] == pytest.approx(1.0)
    total = W_SEMANTIC + W_KEYWORD + W_ENTITY + W_GRAPH
    assert scored["b"][0] == pytest.approx((W_SEMANTIC * 0.5 + W_GRAPH * 1.0) / total)
    # Switched off, a graph value on the row leaks into no score.
    off = by_id(fuse([row("a", 0.5, graph=0.2), row("b", 0.5, graph=0.8)], ALL))
    assert off["a"][0] == off["b"][0]
