"""Unit tests for the mem0 filter compiler: the SQL and parameters it emits, and what it refuses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from app.core.filters import MAX_CONDITIONS, MAX_DEPTH, MAX_LIST_ITEMS, compile_filters
from app.errors import InvalidFilter


def rejection(filters: Any) -> InvalidFilter:
    """Compile filters that must fail and return the error."""
    with pytest.raises(InvalidFilter) as caught:
        compile_filters(filters, first_param=1)
    return caught.value


def nested_and(depth: int) -> dict[str, Any]:
    """A filter whose innermost condition sits `depth` filter objects deep."""
    filters: dict[str, Any] = {"user_id": "u1"}
    for _ in range(depth - 1):
        filters = {"AND": [filters]}
    return filters


# Empty and top-level shapes


@pytest.mark.parametrize("filters", [None, {}])
def test_no_filters_compile_to_true_without_params(filters: Any) -> None:
    compiled = compile_filters(filters, first_param=3)
    assert compiled.sql == "TRUE"
    assert compiled.params == []
    assert compiled.owner_values == {"user_id": set(), "agent_id": set(), "run_id": set()}


@pytest.mark.parametrize("filters", [[{"user_id": "u1"}], "user_id=u1", 3])
def test_a_filter_that_is_not_an_object_is_rejected(filters: Any) -> None:
    error = rejection(filters)
    assert error.code == "invalid_filter"
    assert error.status_code == 400
    assert error.details == {"path": "filters"}


def test_first_param_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        compile_filters({"user_id": "u1"}, first_param=0)


# Columns


def test_a_plain_column_value_means_eq() -> None:
    compiled = compile_filters({"user_id": "u1"}, first_param=1)
    assert compiled.sql == "(m.user_id = $1)"
    assert compiled.params == ["u1"]


def test_placeholders_start_at_first_param() -> None:
    compiled = compile_filters({"user_id": "u1", "agent_id": {"in": ["a1", "a2"]}}, first_param=4)
    assert compiled.sql == "((m.user_id = $4) AND (m.agent_id = ANY($5::text[])))"
    assert compiled.params == ["u1", ["a1", "a2"]]


def test_column_ne_keeps_rows_where_the_column_is_null() -> None:
    compiled = compile_filters({"agent_id": {"ne": "a1"}}, first_param=1)
    assert compiled.sql == "(m.agent_id IS DISTINCT FROM $1)"
    assert compiled.params == ["a1"]


def test_column_nin_is_the_complement_of_in() -> None:
    compiled = compile_filters({"run_id": {"nin": ["r1"]}}, first_param=2)
    assert compiled.sql == "(NOT COALESCE(m.run_id = ANY($2::text[]), FALSE))"
    assert compiled.params == [["r1"]]


def test_column_contains_escapes_like_wildcards() -> None:
    compiled = compile_filters({"user_id": {"contains": r"50%_a\b"}}, first_param=1)
    assert compiled.sql == "(m.user_id LIKE $1 ESCAPE '\\')"
    assert compiled.params == [r"%50\%\_a\\b%"]


def test_column_icontains_uses_ilike() -> None:
    compiled = compile_filters({"agent_id": {"icontains": "Bot"}}, first_param=1)
    assert compiled.sql == "(m.agent_id ILIKE $1 ESCAPE '\\')"
    assert compiled.params == ["%Bot%"]


@pytest.mark.parametrize("filters", [{"agent_id": "*"}, {"agent_id": {"*": True}}])
def test_column_wildcard_means_not_null_and_binds_nothing(filters: dict[str, Any]) -> None:
    compiled = compile_filters(filters, first_param=1)
    assert compiled.sql == "(m.agent_id IS NOT NULL)"
    assert compiled.params == []


def test_eq_of_a_literal_star_is_not_a_wildcard() -> None:
    compiled = compile_filters({"agent_id": {"eq": "*"}}, first_param=1)
    assert compiled.sql == "(m.agent_id = $1)"
    assert compiled.params == ["*"]


def test_several_operators_on_one_field_are_anded() -> None:
    compiled = compile_filters({"user_id": {"ne": "u2", "contains": "u"}}, first_param=1)
    assert compiled.sql == "((m.user_id IS DISTINCT FROM $1) AND (m.user_id LIKE $2 ESCAPE '\\'))"
    assert compiled.params == ["u2", "%u%"]


def test_memory_type_is_normalised_to_upper_case() -> None:
    compiled = compile_filters({"memory_type": {"in": ["long_term", "Episodic"]}}, first_param=1)
    assert compiled.sql == "(m.memory_type = ANY($1::text[]))"
    assert compiled.params == [["LONG_TERM", "EPISODIC"]]


def test_memory_type_ne_binds_the_normalised_value() -> None:
    compiled = compile_filters({"memory_type": {"ne": "semantic"}}, first_param=1)
    assert compiled.sql == "(m.memory_type IS DISTINCT FROM $1)"
    assert compiled.params == ["SEMANTIC"]


# Timestamps


def test_timestamp_range_binds_aware_datetimes() -> None:
    compiled = compile_filters(
        {"created_at": {"gte": "2024-01-01T00:00:00Z", "lt": "2024-02-01T00:00:00+02:00"}}, first_param=1
    )
    assert compiled.sql == "((m.created_at >= $1) AND (m.created_at < $2))"
    assert compiled.params == [
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 1, tzinfo=timezone(timedelta(hours=2))),
    ]


def test_a_naive_timestamp_is_read_as_utc() -> None:
    compiled = compile_filters({"updated_at": {"lte": "2024-03-04 05:06:07"}}, first_param=1)
    assert compiled.sql == "(m.updated_at <= $1)"
    assert compiled.params == [datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)]


def test_a_date_only_value_is_midnight_utc() -> None:
    compiled = compile_filters({"created_at": "2024-05-06"}, first_param=1)
    assert compiled.sql == "(m.created_at = $1)"
    assert compiled.params == [datetime(2024, 5, 6, tzinfo=UTC)]


def test_timestamp_in_binds_a_timestamptz_array() -> None:
    compiled = compile_filters({"created_at": {"in": ["2024-01-01T00:00:00Z", "2024-01-02"]}}, first_param=1)
    assert compiled.sql == "(m.created_at = ANY($1::timestamptz[]))"
    assert compiled.params == [[datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)]]


# Metadata


def test_a_plain_metadata_value_compares_json_with_the_key_bound() -> None:
    compiled = compile_filters({"topic": "food"}, first_param=5)
    assert compiled.sql == "((m.metadata -> $5) = $6::text::jsonb)"
    assert compiled.params == ["topic", '"food"']


@pytest.mark.parametrize(
    ("value", "encoded"), [(3, "3"), (2.5, "2.5"), (True, "true"), (None, "null"), ("x", '"x"')]
)
def test_metadata_eq_json_encodes_every_scalar(value: Any, encoded: str) -> None:
    compiled = compile_filters({"k": {"eq": value}}, first_param=1)
    assert compiled.params == ["k", encoded]


def test_metadata_eq_of_a_json_array_is_allowed_through_the_eq_operator() -> None:
    compiled = compile_filters({"tags": {"eq": ["a", 1]}}, first_param=1)
    assert compiled.params == ["tags", '["a", 1]']


def test_metadata_ne_uses_is_distinct_from_so_missing_keys_match() -> None:
    compiled = compile_filters({"topic": {"ne": "food"}}, first_param=1)
    assert compiled.sql == "((m.metadata -> $1) IS DISTINCT FROM $2::text::jsonb)"
    assert compiled.params == ["topic", '"food"']


def test_metadata_in_binds_json_encoded_elements() -> None:
    compiled = compile_filters({"score": {"in": [1, "two", False]}}, first_param=1)
    assert compiled.sql == "((m.metadata -> $1) = ANY($2::text[]::jsonb[]))"
    assert compiled.params == ["score", ["1", '"two"', "false"]]


def test_metadata_nin_is_the_complement_of_in() -> None:
    compiled = compile_filters({"score": {"nin": [1]}}, first_param=1)
    assert compiled.sql == "(NOT COALESCE((m.metadata -> $1) = ANY($2::text[]::jsonb[]), FALSE))"
    assert compiled.params == ["score", ["1"]]


def test_metadata_numeric_range_guards_the_cast_with_case() -> None:
    compiled = compile_filters({"score": {"gt": 0.1}}, first_param=1)
    assert compiled.sql == (
        "(CASE WHEN jsonb_typeof((m.metadata -> $1)) = 'number'"
        " THEN (m.metadata ->> $1)::numeric > $2::numeric END)"
    )
    assert compiled.params == ["score", Decimal("0.1")]


def test_metadata_string_range_compares_bytewise_text() -> None:
    compiled = compile_filters({"when": {"lte": "2024-06-01"}}, first_param=1)
    assert compiled.sql == (
        "(CASE WHEN jsonb_typeof((m.metadata -> $1)) = 'string'"
        ' THEN (m.metadata ->> $1) COLLATE "C" <= $2::text END)'
    )
    assert compiled.params == ["when", "2024-06-01"]


def test_several_operators_on_one_metadata_key_bind_the_key_once() -> None:
    compiled = compile_filters({"score": {"gte": 1, "lt": 10}}, first_param=1)
    assert compiled.params == ["score", Decimal(1), Decimal(10)]
    assert "$1)::numeric >= $2::numeric" in compiled.sql
    assert "$1)::numeric < $3::numeric" in compiled.sql


def test_metadata_contains_a_string_matches_substrings_and_array_elements() -> None:
    compiled = compile_filters({"tags": {"contains": "a%b"}}, first_param=1)
    assert compiled.sql == (
        "(CASE jsonb_typeof((m.metadata -> $1)) WHEN 'string' THEN (m.metadata ->> $1) LIKE $2 ESCAPE '\\'"
        " WHEN 'array' THEN (m.metadata -> $1) @> $3::text::jsonb ELSE FALSE END)"
    )
    assert compiled.params == ["tags", r"%a\%b%", '["a%b"]']


def test_metadata_contains_a_number_only_matches_array_elements() -> None:
    compiled = compile_filters({"tags": {"contains": 2}}, first_param=1)
    assert compiled.sql == (
        "(CASE jsonb_typeof((m.metadata -> $1)) WHEN 'array' THEN (m.metadata -> $1) @> $2::text::jsonb"
        " ELSE FALSE END)"
    )
    assert compiled.params == ["tags", "[2]"]


def test_metadata_icontains_matches_substrings_and_elements_ignoring_case() -> None:
    compiled = compile_filters({"tags": {"icontains": "Diet"}}, first_param=1)
    assert "(m.metadata ->> $1) ILIKE $2 ESCAPE '\\'" in compiled.sql
    assert "lower(element.item #>> '{}') = lower($3::text)" in compiled.sql
    assert compiled.params == ["tags", "%Diet%", "Diet"]


@pytest.mark.parametrize("filters", [{"topic": "*"}, {"topic": {"*": True}}])
def test_metadata_wildcard_means_present_and_not_json_null(filters: dict[str, Any]) -> None:
    compiled = compile_filters(filters, first_param=1)
    assert compiled.sql == "(m.metadata ? $1 AND (m.metadata -> $1) <> 'null'::jsonb)"
    assert compiled.params == ["topic"]


def test_a_dotted_metadata_key_is_one_flat_key() -> None:
    compiled = compile_filters({"a.b-c": 1}, first_param=1)
    assert compiled.sql == "((m.metadata -> $1) = $2::text::jsonb)"
    assert compiled.params == ["a.b-c", "1"]


def test_metadata_keys_are_bound_never_interpolated() -> None:
    compiled = compile_filters({"drop_table": 1}, first_param=1)
    assert "drop_table" not in compiled.sql
    assert compiled.params[0] == "drop_table"


# Logical operators and parenthesisation


def test_sibling_keys_are_anded_inside_one_pair_of_parentheses() -> None:
    compiled = compile_filters({"user_id": "u1", "topic": "x"}, first_param=1)
    assert compiled.sql == "((m.user_id = $1) AND ((m.metadata -> $2) = $3::text::jsonb))"


def test_or_is_wrapped_so_it_cannot_escape_the_callers_and() -> None:
    compiled = compile_filters({"OR": [{"user_id": "u1"}, {"agent_id": "a1"}]}, first_param=2)
    assert compiled.sql == "((m.user_id = $2) OR (m.agent_id = $3))"
    assert compiled.params == ["u1", "a1"]


def test_and_list_joins_its_members() -> None:
    compiled = compile_filters({"AND": [{"user_id": "u1"}, {"run_id": "r1"}]}, first_param=1)
    assert compiled.sql == "((m.user_id = $1) AND (m.run_id = $2))"


def test_a_single_member_list_adds_no_extra_parentheses() -> None:
    compiled = compile_filters({"OR": [{"user_id": "u1"}]}, first_param=1)
    assert compiled.sql == "(m.user_id = $1)"


def test_not_of_an_object_coalesces_unknown_to_false_before_negating() -> None:
    compiled = compile_filters({"NOT": {"agent_id": "a1"}}, first_param=1)
    assert compiled.sql == "(NOT COALESCE((m.agent_id = $1), FALSE))"


def test_not_of_a_list_negates_the_and_of_its_members() -> None:
    compiled = compile_filters({"NOT": [{"user_id": "u1"}, {"agent_id": "a1"}]}, first_param=1)
    assert compiled.sql == "(NOT COALESCE(((m.user_id = $1) AND (m.agent_id = $2)), FALSE))"
    assert compiled.params == ["u1", "a1"]


def test_nested_logic_numbers_placeholders_in_reading_order() -> None:
    compiled = compile_filters(
        {
            "user_id": "u1",
            "OR": [{"agent_id": "a1"}, {"AND": [{"run_id": "r1"}, {"NOT": {"topic": "x"}}]}],
        },
        first_param=3,
    )
    assert compiled.sql == (
        "((m.user_id = $3) AND ((m.agent_id = $4) OR ((m.run_id = $5)"
        " AND (NOT COALESCE(((m.metadata -> $6) = $7::text::jsonb), FALSE)))))"
    )
    assert compiled.params == ["u1", "a1", "r1", "topic", '"x"']


def test_every_placeholder_has_exactly_one_param() -> None:
    compiled = compile_filters(
        {
            "OR": [
                {"score": {"gt": 1, "lt": 5}},
                {"tags": {"icontains": "a"}},
                {"created_at": {"gt": "2024-01-01"}},
            ]
        },
        first_param=7,
    )
    used = {int(number) for number in re.findall(r"\$(\d+)", compiled.sql)}
    assert used == set(range(7, 7 + len(compiled.params)))


def test_every_dollar_sign_in_the_sql_is_a_placeholder() -> None:
    # Callers may renumber placeholders with a regex, which is only safe if no literal holds a "$".
    compiled = compile_filters(
        {
            "a": "*",
            "b": {"ne": 1, "nin": [2], "gt": 3, "lte": "z"},
            "c": {"contains": "$1", "icontains": "$2"},
            "NOT": {"user_id": {"in": ["$3"]}, "created_at": {"gt": "2024-01-01"}},
        },
        first_param=1,
    )
    assert "$" not in re.sub(r"\$\d+", "", compiled.sql)


# Owner values


def test_owner_values_collect_eq_and_in_from_every_position() -> None:
    compiled = compile_filters(
        {
            "user_id": "u1",
            "OR": [{"user_id": {"in": ["u2", "u3"]}}, {"agent_id": {"eq": "a1"}}],
            "NOT": {"run_id": "r1"},
        },
        first_param=1,
    )
    assert compiled.owner_values == {"user_id": {"u1", "u2", "u3"}, "agent_id": {"a1"}, "run_id": {"r1"}}


def test_owner_values_ignore_ne_nin_contains_and_wildcards() -> None:
    compiled = compile_filters(
        {
            "user_id": {"ne": "u9", "contains": "u"},
            "agent_id": {"nin": ["a9"]},
            "run_id": "*",
        },
        first_param=1,
    )
    assert compiled.owner_values == {"user_id": set(), "agent_id": set(), "run_id": set()}


def test_owner_values_ignore_metadata_keys_that_look_like_owners() -> None:
    compiled = compile_filters({"owner": "u1", "memory_type": "semantic"}, first_param=1)
    assert compiled.owner_values == {"user_id": set(), "agent_id": set(), "run_id": set()}


# Rejections


def test_unknown_operator_is_rejected_with_its_name() -> None:
    error = rejection({"AND": [{"score": {"between": [1, 2]}}]})
    assert "'between'" in error.message
    assert error.details == {"path": "filters.AND[0].score.between"}


def test_sql_style_operators_are_unknown_operators() -> None:
    error = rejection({"score": {">=": 3}})
    assert "'>='" in error.message
    assert error.details == {"path": 'filters.score[">="]'}


@pytest.mark.parametrize("key", ["1abc", "newline\n", "has space", "quote'key", "a" * 65, "", "-x", "k;drop"])
def test_a_metadata_key_outside_the_pattern_is_rejected(key: str) -> None:
    error = rejection({key: 1})
    assert "not a valid metadata key" in error.message


def test_a_metadata_key_of_64_characters_is_accepted() -> None:
    compiled = compile_filters({"k" * 64: 1}, first_param=1)
    assert compiled.params[0] == "k" * 64


@pytest.mark.parametrize("operator", ["AND", "OR", "NOT"])
def test_an_empty_logical_list_is_rejected(operator: str) -> None:
    error = rejection({operator: []})
    assert f"'{operator}' needs at least one" in error.message
    assert error.details == {"path": f"filters.{operator}"}


@pytest.mark.parametrize("filters", [{"AND": {"user_id": "u1"}}, {"OR": "u1"}, {"NOT": 3}])
def test_a_logical_operator_with_the_wrong_shape_is_rejected(filters: dict[str, Any]) -> None:
    error = rejection(filters)
    assert "takes" in error.message


def test_a_logical_list_item_that_is_not_an_object_is_rejected() -> None:
    error = rejection({"OR": [{"user_id": "u1"}, "u2"]})
    assert error.details == {"path": "filters.OR[1]"}


def test_an_empty_object_inside_a_logical_list_is_rejected() -> None:
    error = rejection({"AND": [{}]})
    assert error.details == {"path": "filters.AND[0]"}


@pytest.mark.parametrize("key", ["or", "And", "not"])
def test_lower_case_logical_operators_are_rejected_with_a_hint(key: str) -> None:
    error = rejection({key: [{"user_id": "u1"}]})
    assert f"use '{key.upper()}'" in error.message


@pytest.mark.parametrize("operator", ["in", "nin"])
@pytest.mark.parametrize("operand", ["u1", {"a": 1}, 3, None])
def test_in_and_nin_with_a_non_list_are_rejected(operator: str, operand: Any) -> None:
    error = rejection({"user_id": {operator: operand}})
    assert "takes a list" in error.message
    assert error.details == {"path": f"filters.user_id.{operator}"}


def test_in_with_an_empty_list_is_rejected() -> None:
    assert "non-empty" in rejection({"topic": {"in": []}}).message


def test_in_with_too_many_values_is_rejected() -> None:
    assert "at most" in rejection({"user_id": {"in": ["u"] * (MAX_LIST_ITEMS + 1)}}).message


def test_a_column_in_list_with_a_non_string_item_points_at_the_item() -> None:
    error = rejection({"agent_id": {"in": ["a1", 2]}})
    assert error.details == {"path": "filters.agent_id.in[1]"}


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01", "2024-01-01T25:00", "", 1704067200, None, ["2024-01-01"]]
)
def test_a_bad_date_is_rejected(value: Any) -> None:
    error = rejection({"created_at": {"gt": value}})
    assert "ISO-8601" in error.message
    assert error.details == {"path": "filters.created_at.gt"}


@pytest.mark.parametrize("value", ["long-term", "FACT", 1, None])
def test_a_bad_memory_type_is_rejected(value: Any) -> None:
    error = rejection({"memory_type": {"eq": value}})
    assert "memory_type must be one of" in error.message


@pytest.mark.parametrize(
    ("filters", "path"),
    [
        ({"user_id": {"gt": "u1"}}, "filters.user_id.gt"),
        ({"memory_type": {"contains": "TERM"}}, "filters.memory_type.contains"),
        ({"created_at": {"icontains": "2024"}}, "filters.created_at.icontains"),
    ],
)
def test_an_operator_a_column_does_not_support_is_rejected(filters: dict[str, Any], path: str) -> None:
    error = rejection(filters)
    assert "not supported" in error.message
    assert error.details == {"path": path}


@pytest.mark.parametrize("operand", [{"a": 1}, [1], True, None])
def test_a_range_operator_with_a_non_scalar_or_boolean_is_rejected(operand: Any) -> None:
    error = rejection({"score": {"gt": operand}})
    assert "number or a string" in error.message


@pytest.mark.parametrize("operand", [float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected(operand: float) -> None:
    assert "finite" in rejection({"score": {"lt": operand}}).message
    assert "not plain JSON" in rejection({"score": {"eq": operand}}).message


@pytest.mark.parametrize(
    "filters", [{"tags": {"contains": ["a"]}}, {"tags": {"contains": None}}, {"tags": {"icontains": 3}}]
)
def test_contains_with_a_value_it_cannot_match_is_rejected(filters: dict[str, Any]) -> None:
    assert "takes a string" in rejection(filters).message


def test_column_contains_with_a_non_string_is_rejected() -> None:
    assert "Expected a string" in rejection({"user_id": {"contains": 1}}).message


@pytest.mark.parametrize("operand", [False, "yes", 1])
def test_wildcard_operator_only_takes_true(operand: Any) -> None:
    assert "takes the value true" in rejection({"agent_id": {"*": operand}}).message


def test_a_plain_list_value_is_rejected_with_a_hint() -> None:
    assert '{"in": [...]}' in rejection({"user_id": ["u1", "u2"]}).message


@pytest.mark.parametrize("filters", [{"user_id": None}, {"user_id": 7}, {"agent_id": True}])
def test_a_column_value_that_is_not_a_string_is_rejected(filters: dict[str, Any]) -> None:
    assert "Expected a string" in rejection(filters).message


def test_an_empty_operator_object_is_rejected() -> None:
    assert rejection({"score": {}}).details == {"path": "filters.score"}


def test_a_value_that_is_not_json_is_rejected() -> None:
    assert "not plain JSON" in rejection({"topic": {"eq": {1, 2}}}).message


def test_nesting_up_to_the_depth_limit_is_accepted() -> None:
    compiled = compile_filters(nested_and(MAX_DEPTH), first_param=1)
    assert compiled.sql == "(m.user_id = $1)"


def test_too_deep_nesting_is_rejected() -> None:
    error = rejection(nested_and(MAX_DEPTH + 1))
    assert f"at most {MAX_DEPTH} levels" in error.message
    assert error.details["path"].count("AND[0]") == MAX_DEPTH


def test_too_many_conditions_are_rejected() -> None:
    filters = {"OR": [{"score": {"eq": i}} for i in range(MAX_CONDITIONS + 1)]}
    assert f"at most {MAX_CONDITIONS} conditions" in rejection(filters).message


def test_exactly_the_condition_limit_is_accepted() -> None:
    filters = {"OR": [{"score": {"eq": i}} for i in range(MAX_CONDITIONS)]}
    assert len(compile_filters(filters, first_param=1).params) == 2 * MAX_CONDITIONS


def test_rejections_carry_only_a_message_and_a_path() -> None:
    error = rejection({"created_at": {"gt": "not a date"}})
    assert json.loads(json.dumps(error.to_body())) == {
        "code": "invalid_filter",
        "message": error.message,
        "details": {"path": "filters.created_at.gt"},
    }
    assert error.__cause__ is None
    assert error.__suppress_context__ is True
