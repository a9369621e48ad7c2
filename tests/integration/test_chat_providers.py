"""Chat providers against the fake provider server: the real openai and anthropic clients on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from app.errors import AppError, BadRequest, ProviderError, ProviderTimeout, ProviderUnavailable
from app.providers.chat import JSON_INSTRUCTION, ChatProvider, build_chat_provider
from app.settings import MemSettings, SettingsError
from testsupport.provider_server import FakeProviderServer, Fault

KINDS = ["openai", "generic", "anthropic"]
FAMILY = {"openai": "chat", "generic": "chat", "anthropic": "anthropic"}
PNG_DATA = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG_URI = f"data:image/png;base64,{PNG_DATA}"
HTTPS_IMAGE = "https://images.example.com/cat.jpg"
USER_ONLY = [{"role": "user", "content": "I moved to Lisbon last spring."}]

MakeChat = Callable[..., ChatProvider]


def settings_for(kind: str, fake: FakeProviderServer, **overrides: Any) -> MemSettings:
    options: dict[str, Any] = {
        "chat_provider": kind,
        "chat_base_url": fake.anthropic_base_url if kind == "anthropic" else fake.openai_base_url,
        "chat_api_key": "test",
        "chat_model": "m",
        "provider_max_retries": 0,
        "provider_timeout_seconds": 5,
    }
    return MemSettings(**(options | overrides))


@pytest_asyncio.fixture(loop_scope="session")
async def make_chat(fake_provider: FakeProviderServer) -> AsyncIterator[MakeChat]:
    """Builds chat providers against the fake server and closes them after the test."""
    built: list[ChatProvider] = []

    def make(kind: str, **overrides: Any) -> ChatProvider:
        provider = build_chat_provider(settings_for(kind, fake_provider, **overrides))
        assert provider is not None
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.close()


def script(fake: FakeProviderServer, kind: str, *replies: str | dict[str, Any] | Fault) -> None:
    if kind == "anthropic":
        fake.script_anthropic(*replies)
    else:
        fake.script_chat(*replies)


def errors_counted(provider: str, kind: str) -> float:
    labels = {"provider": provider, "operation": "chat", "kind": kind}
    return REGISTRY.get_sample_value("memory_provider_errors_total", labels) or 0.0


def latencies_observed(provider: str) -> float:
    labels = {"provider": provider, "operation": "chat"}
    return REGISTRY.get_sample_value("memory_provider_latency_seconds_count", labels) or 0.0


def block_texts(turn: dict[str, Any]) -> list[str]:
    return [block["text"] for block in turn["content"] if block["type"] == "text"]


# Answers


@pytest.mark.parametrize("kind", KINDS)
async def test_each_provider_returns_the_scripted_text_and_token_counts(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    script(fake_provider, kind, "Lisbon is where the user lives now.")
    chat = make_chat(kind)

    result = await chat.complete(USER_ONLY, json_mode=False)

    assert result.text == "Lisbon is where the user lives now."
    assert result.output_tokens == 7
    assert result.input_tokens is not None and result.input_tokens > 0
    assert chat.name == kind and chat.model == "m"
    assert fake_provider.count(FAMILY[kind]) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_json_mode_returns_one_parseable_json_object(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    # Anthropic's answer continues the prefilled "{", so its script holds the rest of the object.
    reply = '"facts": ["lives in Lisbon"]}' if kind == "anthropic" else '{"facts": ["lives in Lisbon"]}'
    script(fake_provider, kind, reply)

    result = await make_chat(kind).complete(USER_ONLY)

    assert result.text.startswith("{")
    assert json.loads(result.text) == {"facts": ["lives in Lisbon"]}


async def test_a_successful_call_is_timed_under_the_provider_name(make_chat: MakeChat) -> None:
    before = latencies_observed("generic")
    await make_chat("generic").complete(USER_ONLY)
    assert latencies_observed("generic") == before + 1


# Requests on the wire: OpenAI and OpenAI-compatible servers


@pytest.mark.parametrize("kind", ["openai", "generic"])
async def test_openai_request_has_the_model_zero_temperature_and_json_response_format(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    messages = [{"role": "system", "content": "Extract facts."}, *USER_ONLY]

    await make_chat(kind, chat_max_tokens=321).complete(messages)

    sent = fake_provider.last_request("chat").json
    assert sent["model"] == "m"
    assert sent["temperature"] == 0
    assert sent["max_tokens"] == 321
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"] == messages
    assert "stream" not in sent or sent["stream"] is False


async def test_openai_request_without_json_mode_has_no_response_format(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    await make_chat("openai").complete(USER_ONLY, json_mode=False, max_tokens=50)

    sent = fake_provider.last_request("chat").json
    assert "response_format" not in sent
    assert sent["max_tokens"] == 50


async def test_json_mode_setting_off_keeps_response_format_off_for_servers_without_it(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    await make_chat("generic", chat_json_mode=False).complete(USER_ONLY, json_mode=True)
    assert "response_format" not in fake_provider.last_request("chat").json


async def test_openai_gets_image_parts_passed_through_unchanged(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these pictures?"},
                {"type": "image_url", "image_url": {"url": PNG_URI}},
                {"type": "image_url", "image_url": {"url": HTTPS_IMAGE}},
            ],
        }
    ]

    await make_chat("openai").complete(messages, json_mode=False)

    assert fake_provider.last_request("chat").json["messages"] == messages


# Requests on the wire: Anthropic


async def test_anthropic_gets_the_system_prompt_apart_and_same_role_turns_merged(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    messages = [
        {"role": "system", "content": "You extract facts."},
        {"role": "user", "content": "I like tea."},
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "And I hate coffee."}]},
        {"role": "assistant", "content": "Noted."},
        {"role": "assistant", "content": "Anything else?"},
        {"role": "user", "content": "No."},
    ]

    await make_chat("anthropic", chat_max_tokens=123).complete(messages, json_mode=False)

    sent = fake_provider.last_request("anthropic").json
    assert sent["model"] == "m"
    # API version 2026-10-21, which the client sends, refuses any temperature: determinism is not on offer.
    assert "temperature" not in sent
    assert sent["max_tokens"] == 123
    assert sent["system"] == "You extract facts.\n\nBe brief."
    assert [turn["role"] for turn in sent["messages"]] == ["user", "assistant", "user"]
    assert block_texts(sent["messages"][0]) == ["I like tea.", "And I hate coffee."]
    assert block_texts(sent["messages"][1]) == ["Noted.", "Anything else?"]
    assert block_texts(sent["messages"][2]) == ["No."]


async def test_anthropic_json_mode_adds_the_instruction_and_prefills_a_brace(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.script_anthropic('"facts": []}')
    messages = [{"role": "system", "content": "You extract facts."}, *USER_ONLY]

    result = await make_chat("anthropic").complete(messages)

    sent = fake_provider.last_request("anthropic").json
    assert sent["system"] == f"You extract facts.\n\n{JSON_INSTRUCTION}"
    assert sent["messages"][-1] == {"role": "assistant", "content": "{"}
    assert all(turn["role"] != "system" for turn in sent["messages"])
    assert result.text == '{"facts": []}'


async def test_anthropic_stops_prefilling_for_a_model_that_refuses_a_prefill(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next(
        "anthropic", Fault(status=400, message="Prefilling is not supported for this model.")
    )
    fake_provider.script_anthropic('{"facts": ["one"]}', '{"facts": ["two"]}')
    chat = make_chat("anthropic")

    first = await chat.complete(USER_ONLY)
    second = await chat.complete(USER_ONLY)

    assert (first.text, second.text) == ('{"facts": ["one"]}', '{"facts": ["two"]}')
    refused, retried, later = fake_provider.requests_for("anthropic")
    assert refused.json["messages"][-1] == {"role": "assistant", "content": "{"}
    assert retried.json["messages"][-1]["role"] == "user"
    assert later.json["messages"][-1]["role"] == "user"
    assert later.json["system"] == JSON_INSTRUCTION


async def test_anthropic_keeps_prefilling_when_a_400_was_about_something_else(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next("anthropic", Fault(status=400), times=2)
    chat = make_chat("anthropic")

    with pytest.raises(ProviderError):
        await chat.complete(USER_ONLY)
    await chat.complete(USER_ONLY)

    assert fake_provider.count("anthropic") == 3
    assert fake_provider.last_request("anthropic").json["messages"][-1] == {
        "role": "assistant",
        "content": "{",
    }


async def test_anthropic_json_mode_without_a_system_message_still_sends_the_instruction(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    await make_chat("anthropic").complete(USER_ONLY)
    assert fake_provider.last_request("anthropic").json["system"] == JSON_INSTRUCTION


async def test_anthropic_without_json_mode_sends_no_system_prompt_and_no_prefill(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.script_anthropic("Plain words.")

    result = await make_chat("anthropic").complete(USER_ONLY, json_mode=False)

    sent = fake_provider.last_request("anthropic").json
    assert "system" not in sent
    assert [turn["role"] for turn in sent["messages"]] == ["user"]
    assert result.text == "Plain words."


async def test_anthropic_json_mode_setting_off_drops_the_prefill_for_models_that_refuse_it(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.script_anthropic('{"facts": []}')

    result = await make_chat("anthropic", chat_json_mode=False).complete(USER_ONLY)

    sent = fake_provider.last_request("anthropic").json
    assert sent["messages"][-1]["role"] == "user"
    assert result.text == '{"facts": []}'


async def test_anthropic_gets_image_parts_as_base64_and_url_sources(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe both."},
                {"type": "image_url", "image_url": {"url": PNG_URI}},
                {"type": "image_url", "image_url": {"url": HTTPS_IMAGE, "detail": "low"}},
            ],
        }
    ]

    await make_chat("anthropic").complete(messages, json_mode=False)

    (turn,) = fake_provider.last_request("anthropic").json["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "Describe both."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA}},
        {"type": "image", "source": {"type": "url", "url": HTTPS_IMAGE}},
    ]


async def test_anthropic_refuses_an_image_data_uri_that_is_not_base64_before_calling(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}
    ]

    with pytest.raises(BadRequest) as refused:
        await make_chat("anthropic").complete(messages)

    assert refused.value.status_code == 400
    assert refused.value.code == "invalid_image"
    assert fake_provider.count("anthropic") == 0


# Faults


FAULTS = [
    pytest.param(Fault(status=500), ProviderError, 502, "provider_error", id="500"),
    pytest.param(Fault(status=401), ProviderError, 502, "provider_error", id="401"),
    pytest.param(Fault(disconnect=True), ProviderUnavailable, 503, "provider_unavailable", id="disconnect"),
    pytest.param(Fault(body=b"this is not json"), ProviderError, 502, "provider_error", id="not-json"),
    pytest.param(
        Fault(body=b"<html>Bad gateway</html>", content_type="text/html"),
        ProviderError,
        502,
        "provider_error",
        id="html",
    ),
    pytest.param(Fault(body=b"[1, 2, 3]"), ProviderError, 502, "provider_error", id="json-array"),
    pytest.param(Fault(truncate=True), ProviderError, 502, "provider_error", id="truncated"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "error", "status", "code"), FAULTS)
async def test_a_provider_fault_becomes_the_matching_service_error(
    kind: str,
    fault: Fault,
    error: type[AppError],
    status: int,
    code: str,
    make_chat: MakeChat,
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.fail_next(FAMILY[kind], fault)

    with pytest.raises(error) as raised:
        await make_chat(kind).complete(USER_ONLY)

    assert raised.value.status_code == status
    assert raised.value.code == code
    assert fake_provider.count(FAMILY[kind]) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_rate_limited_call_gives_503_with_retry_after_and_is_counted(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next(FAMILY[kind], Fault(status=429, retry_after=3))
    before = errors_counted(kind, "rate_limited")

    with pytest.raises(ProviderUnavailable) as raised:
        await make_chat(kind).complete(USER_ONLY)

    assert raised.value.status_code == 503
    assert raised.value.code == "provider_rate_limited"
    assert raised.value.headers == {"Retry-After": "3"}
    assert errors_counted(kind, "rate_limited") == before + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_provider_slower_than_the_timeout_gives_504(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next(FAMILY[kind], Fault(delay=1.5))
    chat = make_chat(kind, provider_timeout_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(ProviderTimeout) as raised:
        await chat.complete(USER_ONLY)

    assert raised.value.status_code == 504
    assert raised.value.code == "provider_timeout"
    assert loop.time() - started < 1.2


@pytest.mark.parametrize("kind", KINDS)
async def test_a_429_then_success_succeeds_with_one_retry(
    kind: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next(FAMILY[kind], Fault(status=429, retry_after=0.05))
    script(fake_provider, kind, "second time lucky")

    result = await make_chat(kind, provider_max_retries=1).complete(USER_ONLY, json_mode=False)

    assert result.text == "second time lucky"
    assert fake_provider.count(FAMILY[kind]) == 2


@pytest.mark.parametrize("kind", ["openai", "generic"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"object": "chat.completion", "choices": []}, "no choices", id="no-choices"),
        pytest.param(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]},
            "no text",
            id="null-content",
        ),
        pytest.param(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": "  "}}]},
            "no text",
            id="blank-content",
        ),
        pytest.param(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "No."}}]},
            "refused",
            id="refusal",
        ),
    ],
)
async def test_an_openai_answer_without_text_is_a_provider_error(
    kind: str, body: dict[str, Any], message: str, make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.script_chat(body)
    before = errors_counted(kind, "bad_response")

    with pytest.raises(ProviderError) as raised:
        await make_chat(kind).complete(USER_ONLY)

    assert message in raised.value.message
    assert raised.value.status_code == 502
    assert errors_counted(kind, "bad_response") == before + 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"type": "message", "role": "assistant", "content": []}, id="no-blocks"),
        pytest.param(
            {"type": "message", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]},
            id="no-text-blocks",
        ),
        pytest.param({"type": "message", "content": [{"type": "text", "text": ""}]}, id="empty-text"),
    ],
)
async def test_an_anthropic_answer_without_text_is_a_provider_error(
    body: dict[str, Any], make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.script_anthropic(body)

    with pytest.raises(ProviderError) as raised:
        await make_chat("anthropic").complete(USER_ONLY)

    assert "no text" in raised.value.message


async def test_a_truncated_answer_is_logged_without_its_text_or_the_key(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    secret = "the user's bank PIN is 4321"
    fake_provider.script_chat(
        {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": secret}, "finish_reason": "length"}
            ]
        }
    )
    chat = make_chat("openai", chat_api_key="sk-never-log-me")

    with capture_logs() as logs:
        result = await chat.complete([{"role": "user", "content": secret}])

    assert result.text == secret
    assert [entry["event"] for entry in logs] == ["chat_answer_truncated"]
    assert "4321" not in repr(logs) and "never-log-me" not in repr(logs)
    assert fake_provider.last_request("chat").headers["authorization"] == "Bearer sk-never-log-me"


async def test_calls_beyond_the_concurrency_limit_wait_their_turn(
    make_chat: MakeChat, fake_provider: FakeProviderServer
) -> None:
    fake_provider.latency = 0.3
    chat = make_chat("generic", provider_concurrency=1)

    await asyncio.gather(chat.complete(USER_ONLY), chat.complete(USER_ONLY))

    first, second = fake_provider.requests_for("chat")
    assert second.time - first.time >= 0.25


# Building


def test_no_chat_provider_is_built_when_chat_is_off() -> None:
    assert build_chat_provider(MemSettings(chat_provider="none", chat_api_key="test")) is None


def test_generic_chat_without_a_base_url_is_refused_at_build_time() -> None:
    with pytest.raises(SettingsError, match="base-url"):
        build_chat_provider(MemSettings(chat_provider="generic", chat_model="m"))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_hosted_chat_provider_without_a_key_is_refused_at_build_time(kind: str) -> None:
    with pytest.raises(SettingsError, match="API key"):
        build_chat_provider(MemSettings(chat_provider=kind, chat_model="m"))


@pytest.mark.parametrize(
    ("kind", "vision", "expected"),
    [
        ("openai", None, True),
        ("anthropic", None, True),
        ("generic", None, False),
        ("generic", True, True),
        ("openai", False, False),
    ],
)
async def test_vision_follows_the_provider_unless_the_setting_says_otherwise(
    kind: str, vision: bool | None, expected: bool, make_chat: MakeChat
) -> None:
    assert make_chat(kind, chat_vision=vision).supports_vision is expected
