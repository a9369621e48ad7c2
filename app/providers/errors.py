"""Provider failures as the service's errors, mapped one way for every provider and operation.

The openai and anthropic clients are generated from the same template, so their exception trees
line up class for class and one table covers both. Neither validates answers (strict validation
is off by default): a body that is not JSON raises a bare `json.JSONDecodeError`, and one of the
wrong shape comes back half-built, as a `str` or with missing fields that only fail when read.
Hence two guards: `provider_call` around the request, `reading_answer` around reading its result.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import anthropic
import openai

from app.errors import AppError, ProviderError, ProviderTimeout, ProviderUnavailable
from app.providers.metrics import PROVIDER_ERRORS, PROVIDER_LATENCY

_NOUNS = {"embed": "embedding provider", "chat": "chat provider"}

# Checked in this order: a timeout is also a connection error, a rate limit also a status error.
_TIMEOUT = (openai.APITimeoutError, anthropic.APITimeoutError)
_CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError)
_RATE_LIMITED = (openai.RateLimitError, anthropic.RateLimitError)
_STATUS = (openai.APIStatusError, anthropic.APIStatusError)
# Only decoding errors, not every ValueError: one raised by our own request-building is a bug, not a
# provider failure, and must surface as one.
_UNDECODABLE = (
    openai.APIResponseValidationError,
    anthropic.APIResponseValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def _noun(operation: str) -> str:
    return _NOUNS.get(operation, "model provider")


def _retry_after(headers: Mapping[str, str]) -> str:
    """Retry-After for our caller: whole seconds (at least 1), or the provider's HTTP date as given."""
    raw = headers.get("retry-after")
    seconds = _seconds(raw)
    if seconds is None:
        millis = _seconds(headers.get("retry-after-ms"))
        seconds = None if millis is None else millis / 1000
    if seconds is not None:
        return str(max(1, math.ceil(seconds)))
    return raw.strip() if raw and raw.strip() else "1"


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def translate(exc: BaseException, operation: str) -> tuple[str, AppError] | None:
    """The metric kind and the service error for a failed provider request; None if not a provider failure."""
    noun = _noun(operation)
    if isinstance(exc, _TIMEOUT):
        return "timeout", ProviderTimeout(f"The {noun} did not answer in time.")
    if isinstance(exc, _RATE_LIMITED):
        return "rate_limited", ProviderUnavailable(
            f"The {noun} is rate limiting this service.",
            code="provider_rate_limited",
            headers={"Retry-After": _retry_after(exc.response.headers)},
        )
    if isinstance(exc, _CONNECTION):
        return "connection", ProviderUnavailable(f"The {noun} cannot be reached.")
    if isinstance(exc, _STATUS):
        # The provider's own message may echo parts of the request, so only its status is passed on.
        return "bad_response", ProviderError(f"The {noun} answered with HTTP {exc.status_code}.")
    if isinstance(exc, _UNDECODABLE):
        return "bad_response", ProviderError(f"The {noun}'s answer could not be read.")
    return None


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[None]:
    """Time one provider request, and raise its failure as the service's error, counted by kind."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        translated = translate(exc, operation)
        if translated is None:
            raise
        kind, error = translated
        PROVIDER_ERRORS.labels(provider, operation, kind).inc()
        raise error from exc
    PROVIDER_LATENCY.labels(provider, operation).observe(time.perf_counter() - started)


@contextmanager
def reading_answer(provider: str, operation: str) -> Iterator[None]:
    """Guard the code that reads a provider's answer: a field of the wrong shape is a bad answer."""
    try:
        yield
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise bad_answer(provider, operation) from exc


def bad_answer(provider: str, operation: str, message: str | None = None) -> ProviderError:
    """Count an answer that arrived but holds nothing usable, and return the error to raise."""
    PROVIDER_ERRORS.labels(provider, operation, "bad_response").inc()
    return ProviderError(message or f"The {_noun(operation)}'s answer could not be read.")
