"""Chat providers behind one interface: OpenAI, Anthropic's Messages API, and OpenAI-compatible servers.

Callers speak OpenAI's message format (roles system/user/assistant; content a string or a list of
`text` and `image_url` parts); the Anthropic provider translates it. Retries with backoff on 429 and
5xx, honouring Retry-After, are the client libraries' own; what is left when they give up is
mapped to the service's errors by `app.providers.errors`. Prompts and answers are never logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import openai
import structlog
from openai.types.chat import ChatCompletion

from app.errors import BadRequest, ProviderError
from app.providers.errors import bad_answer, provider_call
from app.settings import MemSettings, SettingsError

log = structlog.get_logger(__name__)

OPERATION = "chat"
# Anthropic has no JSON mode: the instruction asks for one object, and prefilling the answer with
# "{" makes the model continue one rather than open with prose or a code fence.
JSON_INSTRUCTION = (
    "Answer with one JSON object only: no text before or after it, and no code fences. "
    "Your answer starts with the opening brace."
)
JSON_PREFILL = "{"


@dataclass(frozen=True)
class ChatResult:
    text: str
    """The assistant's text; in Anthropic's JSON mode, with the prefilled "{" put back in front."""
    input_tokens: int | None
    output_tokens: int | None


@dataclass(frozen=True)
class ChatOptions:
    """What every chat provider is built from (read from MemSettings by build_chat_provider)."""

    model: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    timeout: float
    max_retries: int
    concurrency: int
    json_mode: bool
    max_tokens: int
    supports_vision: bool


class ChatProvider(Protocol):
    name: str
    model: str
    supports_vision: bool
    """Whether the model can see images; callers describe or drop image parts when it cannot."""

    async def complete(
        self, messages: list[dict[str, Any]], *, json_mode: bool = True, max_tokens: int | None = None
    ) -> ChatResult: ...

    async def close(self) -> None: ...


def _block_text(block: object) -> str:
    text = getattr(block, "text", None)
    return text if getattr(block, "type", None) == "text" and isinstance(text, str) else ""


def _tokens(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpenAIChat:
    """OpenAI's chat completions, or any OpenAI-compatible server (provider `generic`)."""

    def __init__(self, name: str, options: ChatOptions) -> None:
        self.name = name
        self.model = options.model
        self.supports_vision = options.supports_vision
        self._json_mode = options.json_mode
        self._max_tokens = options.max_tokens
        # A local server may need no key, but the client refuses to start without one (and would
        # otherwise read OPENAI_API_KEY itself): keys come from settings only.
        self._client = openai.AsyncOpenAI(
            base_url=options.base_url,
            api_key=options.api_key or "unset",
            timeout=options.timeout,
            max_retries=options.max_retries,
        )
        self._semaphore = asyncio.Semaphore(options.concurrency)

    async def complete(
        self, messages: list[dict[str, Any]], *, json_mode: bool = True, max_tokens: int | None = None
    ) -> ChatResult:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens or self._max_tokens,
        }
        if json_mode and self._json_mode:
            request["response_format"] = {"type": "json_object"}
        with provider_call(self.name, OPERATION):
            async with self._semaphore:
                response = await self._client.chat.completions.create(**request)
        return self._read(response)

    def _read(self, response: object) -> ChatResult:
        # Without strict validation the client returns whatever arrived: check every level.
        if not isinstance(response, ChatCompletion):
            raise bad_answer(self.name, OPERATION)
        choices = response.choices
        if not isinstance(choices, list) or not choices:
            raise bad_answer(self.name, OPERATION, "The chat provider returned no choices.")
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if not isinstance(content, str) or not content.strip():
            if isinstance(getattr(message, "refusal", None), str):
                raise bad_answer(self.name, OPERATION, "The chat provider refused to answer.")
            raise bad_answer(self.name, OPERATION, "The chat provider returned no text.")
        if getattr(choice, "finish_reason", None) == "length":
            log.warning("chat_answer_truncated", provider=self.name, model=self.model)
        usage = getattr(response, "usage", None)
        return ChatResult(
            text=content,
            input_tokens=_tokens(getattr(usage, "prompt_tokens", None)),
            output_tokens=_tokens(getattr(usage, "completion_tokens", None)),
        )

    async def close(self) -> None:
        await self._client.close()


class AnthropicChat:
    """Anthropic's Messages API, with OpenAI-style messages translated (see `to_anthropic`)."""

    name = "anthropic"

    def __init__(self, options: ChatOptions) -> None:
        self.model = options.model
        self.supports_vision = options.supports_vision
        self._json_mode = options.json_mode
        self._max_tokens = options.max_tokens
        self._prefill = True
        # An explicit api_key also stops the client from looking for credentials in the
        # environment and in profile files on disk.
        self._client = anthropic.AsyncAnthropic(
            base_url=options.base_url,
            api_key=options.api_key or "unset",
            timeout=options.timeout,
            max_retries=options.max_retries,
        )
        self._semaphore = asyncio.Semaphore(options.concurrency)

    async def complete(
        self, messages: list[dict[str, Any]], *, json_mode: bool = True, max_tokens: int | None = None
    ) -> ChatResult:
        use_json = json_mode and self._json_mode
        system, turns = to_anthropic(messages)
        if use_json:
            system = f"{system}\n\n{JSON_INSTRUCTION}" if system else JSON_INSTRUCTION
        # No temperature: this client sends API version 2026-10-21, which refuses temperature, top_p
        # and top_k at any value (the client no longer even accepts them).
        request: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": max_tokens or self._max_tokens,
        }
        if system:
            request["system"] = system
        # A prefill continues the last turn, so it only makes sense after the user has spoken.
        if not (use_json and self._prefill and turns[-1]["role"] == "user"):
            return self._read(await self._create(request), prefill="")
        prefilled = request | {"messages": [*turns, {"role": "assistant", "content": JSON_PREFILL}]}
        try:
            return self._read(await self._create(prefilled), prefill=JSON_PREFILL)
        except ProviderError as exc:
            if not isinstance(exc.__cause__, anthropic.BadRequestError):
                raise
            # Newer models refuse a prefilled assistant turn with a 400. Ask again without it, and
            # if that works, stop prefilling for this model; the JSON instruction still holds.
            result = self._read(await self._create(request), prefill="")
            self._prefill = False
            log.info("chat_prefill_unsupported", provider=self.name, model=self.model)
            return result

    async def _create(self, request: dict[str, Any]) -> object:
        with provider_call(self.name, OPERATION):
            async with self._semaphore:
                return await self._client.messages.create(**request)

    def _read(self, response: object, prefill: str) -> ChatResult:
        if not isinstance(response, anthropic.types.Message):
            raise bad_answer(self.name, OPERATION)
        blocks = response.content if isinstance(response.content, list) else []
        completion = "".join(_block_text(block) for block in blocks)
        if not completion.strip():
            if getattr(response, "stop_reason", None) == "refusal":
                raise bad_answer(self.name, OPERATION, "The chat provider refused to answer.")
            raise bad_answer(self.name, OPERATION, "The chat provider returned no text.")
        if getattr(response, "stop_reason", None) == "max_tokens":
            log.warning("chat_answer_truncated", provider=self.name, model=self.model)
        usage = getattr(response, "usage", None)
        return ChatResult(
            text=prefill + completion,
            input_tokens=_tokens(getattr(usage, "input_tokens", None)),
            output_tokens=_tokens(getattr(usage, "output_tokens", None)),
        )

    async def close(self) -> None:
        await self._client.close()


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI-style messages as Anthropic's (system text, turns).

    System messages are joined into the separate system prompt; the other turns keep their order,
    with consecutive turns of one role merged (Anthropic wants them alternating) and empty text
    dropped (Anthropic refuses empty text blocks).
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            text = _system_text(content)
            if text.strip():
                system.append(text)
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"unsupported message role {role!r}")
        blocks = _anthropic_blocks(content)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise ValueError("a chat needs at least one user or assistant message with content")
    return "\n\n".join(system), turns


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return content
    raise ValueError("message content must be a string or a list of parts")


def _system_text(content: Any) -> str:
    texts = []
    for part in _parts(content):
        if part.get("type") != "text":
            raise ValueError("a system message can hold text only")
        texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def _anthropic_blocks(content: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in _parts(content):
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text", ""))
            if text.strip():
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise BadRequest("An image part has no URL.", code="invalid_image")
            blocks.append({"type": "image", "source": _image_source(url)})
        else:
            raise ValueError(f"unsupported content part type {kind!r}")
    return blocks


def _image_source(url: str) -> dict[str, str]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    # data:[<media type>][;<parameter>]*;base64,<data>
    header, comma, data = url.partition(",")
    media_type, *parameters = header.removeprefix("data:").split(";")
    if not comma or "base64" not in parameters or not media_type.startswith("image/") or not data:
        raise BadRequest(
            "An image given as a data URI must be base64-encoded, as in data:image/png;base64,....",
            code="invalid_image",
        )
    return {"type": "base64", "media_type": media_type, "data": data}


def build_chat_provider(mem: MemSettings) -> ChatProvider | None:
    """The configured chat provider, or None when chat is off (`nubase.mem.chat-provider: none`)."""
    provider = mem.chat_provider
    if provider == "none":
        return None
    if provider not in ("openai", "anthropic", "generic"):
        raise SettingsError(f"unknown chat provider {provider!r}")
    if provider == "generic" and not mem.chat_base_url:
        raise SettingsError("nubase.mem.chat.base-url is required for the generic chat provider")
    if provider != "generic" and not mem.chat_api_key:
        variable = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
        raise SettingsError(
            f"the {provider} chat provider needs an API key: set NUBASE_MEM_CHAT_API_KEY or {variable}"
        )
    options = ChatOptions(
        model=mem.chat_model,
        base_url=mem.chat_base_url,
        api_key=mem.chat_api_key,
        timeout=mem.provider_timeout_seconds,
        max_retries=mem.provider_max_retries,
        concurrency=mem.provider_concurrency,
        json_mode=mem.chat_json_mode,
        max_tokens=mem.chat_max_tokens,
        # Most models behind a generic server (vLLM, Ollama, DeepSeek) see text only.
        supports_vision=mem.chat_vision if mem.chat_vision is not None else provider != "generic",
    )
    if provider == "anthropic":
        return AnthropicChat(options)
    return OpenAIChat(provider, options)
