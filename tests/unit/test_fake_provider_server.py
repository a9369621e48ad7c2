"""The fake provider server, exercised through the real openai and anthropic clients."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from testsupport.provider_server import FakeProviderServer, Fault, fake_embedding

USER_HI = [{"role": "user", "content": "hi"}]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def srv(shared_server: FakeProviderServer) -> Iterator[FakeProviderServer]:
    shared_server.reset()
    yield shared_server
    shared_server.reset()


@pytest.fixture
def oai(srv: FakeProviderServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def make_openai() -> Iterator[Callable[..., openai.OpenAI]]:
    """Builds OpenAI clients with custom options and closes them after the test."""
    clients: list[openai.OpenAI] = []

    def make(base_url: str, **options: object) -> openai.OpenAI:
        clients.append(openai.OpenAI(base_url=base_url, api_key="test", **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def claude(srv: FakeProviderServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


def chat(client: openai.OpenAI, content: str = "hi") -> str | None:
    response = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": content}]
    )
    return response.choices[0].message.content


# fake_embedding


def test_fake_embedding_is_deterministic_and_unit_length() -> None:
    vector = fake_embedding("Alice likes green tea", 384)

    assert vector == fake_embedding("Alice likes green tea", 384)
    assert len(vector) == 384
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-9)


def test_fake_embedding_ignores_case_and_punctuation() -> None:
    assert fake_embedding("Hello, World!", 64) == fake_embedding("hello world", 64)


def test_empty_text_gets_a_fixed_unit_vector() -> None:
    vector = fake_embedding("", 16)

    assert vector == fake_embedding("  ...  ", 16)
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-9)


def test_fake_embedding_rejects_non_positive_dims() -> None:
    with pytest.raises(ValueError):
        fake_embedding("x", 0)


# Embeddings through the real client


def test_openai_client_asks_for_base64_by_default_and_decodes_fake_embedding(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    texts = ["Alice likes green tea", "Bob lives in Paris"]

    response = oai.embeddings.create(model="text-embedding-3-small", input=texts)

    assert srv.last_request("embeddings").json["encoding_format"] == "base64"
    assert [d.index for d in response.data] == [0, 1]
    for text, item in zip(texts, response.data, strict=True):
        assert item.embedding == pytest.approx(fake_embedding(text, 384), abs=1e-6)
    assert response.model == "text-embedding-3-small"
    assert response.usage.prompt_tokens == 8


def test_float_encoding_returns_the_exact_fake_embedding(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    response = oai.embeddings.create(model="m", input="Alice likes green tea", encoding_format="float")

    assert srv.last_request("embeddings").json["encoding_format"] == "float"
    assert response.data[0].embedding == fake_embedding("Alice likes green tea", 384)


def test_dimensions_parameter_is_honoured(oai: openai.OpenAI) -> None:
    response = oai.embeddings.create(model="m", input="green tea", dimensions=64)

    assert response.data[0].embedding == pytest.approx(fake_embedding("green tea", 64), abs=1e-6)


def test_default_dimensions_come_from_the_constructor(make_openai: Callable[..., openai.OpenAI]) -> None:
    with FakeProviderServer(embedding_dims=32) as server:
        client = make_openai(server.openai_base_url, max_retries=0)
        response = client.embeddings.create(model="m", input="green tea")

    assert len(response.data[0].embedding) == 32


def test_texts_sharing_words_are_closer_than_unrelated_texts(oai: openai.OpenAI) -> None:
    texts = [
        "Alice likes green tea",
        "alice likes green tea in the morning",
        "quarterly revenue grew strongly",
    ]
    tea, more_tea, revenue = (d.embedding for d in oai.embeddings.create(model="m", input=texts).data)

    assert cosine(tea, more_tea) > 0.7
    assert abs(cosine(tea, revenue)) < 0.2


def test_set_embedding_overrides_the_vector_for_that_text_only(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.set_embedding("special", [1.0, 0.0, 0.0])

    response = oai.embeddings.create(model="m", input=["special", "ordinary"], encoding_format="float")

    assert response.data[0].embedding == [1.0, 0.0, 0.0]
    assert response.data[1].embedding == fake_embedding("ordinary", 384)


def test_embedding_dims_override_returns_vectors_of_the_wrong_size(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.embedding_dims_override = 10

    response = oai.embeddings.create(model="m", input="green tea", dimensions=384)

    assert len(response.data[0].embedding) == 10


def test_token_array_input_is_rejected_with_an_openai_bad_request(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        oai.embeddings.create(model="m", input=[[1, 2, 3]])

    assert excinfo.value.body["param"] == "input"
    assert excinfo.value.body["type"] == "invalid_request_error"


# Chat completions and Anthropic messages


def test_chat_returns_scripted_replies_in_order_then_the_default(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.script_chat('{"facts": ["likes tea"]}', "second")

    assert chat(oai, "I like tea") == '{"facts": ["likes tea"]}'
    assert chat(oai) == "second"
    assert chat(oai) == '{"facts": []}'


def test_chat_request_is_recorded_with_its_messages(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "I like tea"}]
    )

    recorded = srv.last_request("chat")
    assert recorded.path == "/v1/chat/completions"
    assert recorded.json["messages"] == [{"role": "user", "content": "I like tea"}]
    assert recorded.headers["authorization"] == "Bearer test"
    assert response.model == "gpt-test"
    assert response.choices[0].finish_reason == "stop"
    assert srv.count("chat") == 1
    assert srv.count("embeddings") == 0


def test_a_dict_reply_is_used_as_the_whole_chat_response(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.script_chat(
        {
            "id": "custom",
            "object": "chat.completion",
            "created": 1,
            "model": "other",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "length"}
            ],
        }
    )

    response = oai.chat.completions.create(model="gpt-test", messages=USER_HI)

    assert response.id == "custom"
    assert response.choices[0].finish_reason == "length"


def test_chat_responder_answers_from_the_request_when_the_script_is_empty(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.chat_responder = lambda request: request["messages"][-1]["content"].upper()

    assert chat(oai, "echo me") == "ECHO ME"


def test_anthropic_messages_return_scripted_text_from_their_own_queue(
    srv: FakeProviderServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    srv.script_anthropic("from claude")
    srv.script_chat("from openai")

    message = claude.messages.create(
        model="claude-test", max_tokens=100, system="Be brief.", messages=USER_HI
    )

    assert message.content[0].text == "from claude"
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-test"
    assert chat(oai) == "from openai"
    recorded = srv.last_request("anthropic")
    # anthropic 2.10 sends the API key as a Bearer token, not as x-api-key.
    assert recorded.headers["authorization"] == "Bearer test"
    assert "anthropic-version" in recorded.headers
    assert recorded.json["messages"] == USER_HI


def test_anthropic_faults_use_the_anthropic_error_format(
    srv: FakeProviderServer, claude: anthropic.Anthropic
) -> None:
    srv.fail_next("anthropic", Fault(status=529))

    with pytest.raises(anthropic.OverloadedError) as excinfo:
        claude.messages.create(model="claude-test", max_tokens=10, messages=USER_HI)

    assert excinfo.value.body["error"]["type"] == "overloaded_error"


# Faults


def test_a_500_fault_raises_internal_server_error(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.fail_next("chat", Fault(status=500))

    with pytest.raises(openai.InternalServerError):
        chat(oai)


def test_a_429_fault_raises_rate_limit_error_with_retry_after(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.fail_next("embeddings", Fault(status=429, retry_after=0.1))

    with pytest.raises(openai.RateLimitError) as excinfo:
        oai.embeddings.create(model="m", input="x")

    assert excinfo.value.response.headers["retry-after"] == "0.1"
    assert excinfo.value.code == "rate_limit_exceeded"


def test_a_delay_beyond_the_client_timeout_raises_api_timeout_error(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.fail_next("embeddings", Fault(delay=2.0))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).embeddings.create(model="m", input="x")

    assert time.monotonic() - started < 1.5


def test_client_retry_succeeds_after_one_injected_failure(
    srv: FakeProviderServer, make_openai: Callable[..., openai.OpenAI]
) -> None:
    srv.fail_next("embeddings", Fault(status=500), times=1)
    client = make_openai(srv.openai_base_url, max_retries=1)

    response = client.embeddings.create(model="m", input="green tea")

    assert response.data[0].embedding == pytest.approx(fake_embedding("green tea", 384), abs=1e-6)
    assert srv.count("embeddings") == 2
    assert srv.requests_for("embeddings")[1].headers["x-stainless-retry-count"] == "1"


def test_client_waits_the_retry_after_of_a_429_then_gets_the_scripted_reply(
    srv: FakeProviderServer, make_openai: Callable[..., openai.OpenAI]
) -> None:
    srv.script_chat("after the wait")
    srv.fail_next("chat", Fault(status=429, retry_after=0.05))
    client = make_openai(srv.openai_base_url, max_retries=1)

    assert chat(client) == "after the wait"
    first, second = srv.requests_for("chat")
    assert second.time - first.time >= 0.05


def test_a_non_json_body_labelled_json_raises_a_plain_json_decode_error(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    # The openai client does not wrap this in one of its own errors: callers must catch ValueError.
    srv.fail_next("chat", Fault(body=b"not json", status=200))

    with pytest.raises(json.JSONDecodeError):
        chat(oai)


def test_a_non_json_body_labelled_html_comes_back_as_a_bare_string(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.fail_next("chat", Fault(body=b"<html>bad gateway</html>", content_type="text/html"))

    response = oai.chat.completions.create(model="gpt-test", messages=USER_HI)

    assert response == "<html>bad gateway</html>"


def test_a_truncated_response_raises_a_json_decode_error(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.fail_next("embeddings", Fault(truncate=True))

    with pytest.raises(json.JSONDecodeError):
        oai.embeddings.create(model="m", input="green tea")


def test_a_disconnect_raises_api_connection_error(
    srv: FakeProviderServer, claude: anthropic.Anthropic
) -> None:
    srv.fail_next("anthropic", Fault(disconnect=True))

    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(model="claude-test", max_tokens=10, messages=USER_HI)


def test_a_scripted_fault_is_one_shot(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.script_chat(Fault(status=500), "recovered")

    with pytest.raises(openai.InternalServerError):
        chat(oai)
    assert chat(oai) == "recovered"


def test_fail_next_does_not_consume_the_script(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.script_chat("kept")
    srv.fail_next("chat", Fault(status=503), times=2)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(oai)
    assert chat(oai) == "kept"


def test_a_persistent_fault_applies_to_its_family_until_cleared(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.set_fault(Fault(status=500), family="embeddings")

    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            oai.embeddings.create(model="m", input="x")
    assert chat(oai) == '{"facts": []}'

    srv.set_fault(None, family="embeddings")
    assert len(oai.embeddings.create(model="m", input="x").data) == 1


def test_latency_delays_every_answer(srv: FakeProviderServer, oai: openai.OpenAI) -> None:
    srv.latency = 0.3
    started = time.monotonic()

    chat(oai)

    assert time.monotonic() - started >= 0.3


def test_unknown_paths_get_a_404_in_openai_error_format(srv: FakeProviderServer) -> None:
    response = httpx.post(srv.base_url + "/v1/nope", json={})

    assert response.status_code == 404
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert srv.last_request().path == "/v1/nope"


def test_unknown_family_names_are_rejected(srv: FakeProviderServer) -> None:
    with pytest.raises(ValueError):
        srv.fail_next("embedding", Fault(status=500))


# Lifecycle and state


def test_reset_clears_scripts_faults_overrides_and_recordings(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.script_chat("stale")
    srv.set_fault(Fault(status=500), family="embeddings")
    srv.fail_next("chat", Fault(status=500))
    srv.set_embedding("x", [1.0])
    srv.embedding_dims_override = 3
    srv.latency = 5.0
    httpx.post(srv.base_url + "/v1/nope")

    srv.reset()

    assert srv.requests == []
    assert chat(oai) == '{"facts": []}'
    assert len(oai.embeddings.create(model="m", input="x").data[0].embedding) == 384


def test_reset_drops_a_delayed_request_so_it_cannot_steal_later_replies(
    srv: FakeProviderServer, oai: openai.OpenAI
) -> None:
    srv.fail_next("chat", Fault(delay=10.0))
    outcome: list[BaseException | str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(lambda: chat(oai))))
    worker.start()
    wait_until(lambda: srv.count("chat") == 1)

    srv.reset()
    srv.script_chat("fresh")
    worker.join(timeout=2)

    assert not worker.is_alive()
    assert isinstance(outcome[0], openai.APIConnectionError)
    assert chat(oai) == "fresh"


def test_stop_returns_promptly_while_a_delayed_request_is_in_flight(
    make_openai: Callable[..., openai.OpenAI],
) -> None:
    server = FakeProviderServer().start()
    server.fail_next("chat", Fault(delay=30.0))
    client = make_openai(server.openai_base_url, max_retries=0, timeout=10)
    outcome: list[BaseException | str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(lambda: chat(client))))
    worker.start()
    wait_until(lambda: server.count("chat") == 1)
    started = time.monotonic()

    server.stop()

    assert time.monotonic() - started < 2.0
    worker.join(timeout=2)
    assert isinstance(outcome[0], openai.APIConnectionError)


def test_context_manager_binds_to_localhost_and_stops_on_exit() -> None:
    with FakeProviderServer() as server:
        url = server.base_url
        assert url.startswith("http://127.0.0.1:")
        assert server.openai_base_url == url + "/v1"
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 200

    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/v1/embeddings", json={"input": "x"})


@pytest.mark.asyncio
async def test_async_clients_work_against_the_same_server(srv: FakeProviderServer) -> None:
    srv.script_chat("async openai")
    srv.script_anthropic("async claude")
    async with (
        openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="test", max_retries=0) as oai,
        anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="test", max_retries=0) as claude,
    ):
        embedded = await oai.embeddings.create(model="m", input="green tea")
        completion = await oai.chat.completions.create(model="gpt-test", messages=USER_HI)
        message = await claude.messages.create(model="claude-test", max_tokens=10, messages=USER_HI)

    assert embedded.data[0].embedding == pytest.approx(fake_embedding("green tea", 384), abs=1e-6)
    assert completion.choices[0].message.content == "async openai"
    assert message.content[0].text == "async claude"


def _capture(call) -> BaseException | str | None:
    try:
        return call()
    except Exception as exc:
        return exc
