"""Turning an add request's messages into a turn of text lines, its expiry and the session window."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from app.auth.scope import Owner
from app.core.config import EffectiveConfig
from app.core.schemas import MAX_MESSAGES
from app.errors import BadRequest
from app.memories import repo
from app.memories.schemas import AddMemoryRequest, Message

ROLES = ("user", "assistant", "system", "tool")


@dataclass(frozen=True)
class Line:
    """One non-system message of the turn, as text."""

    role: str
    name: str | None
    text: str


@dataclass
class Turn:
    lines: list[Line]
    notes: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]


def _is_blank(message: Message) -> bool:
    return not message.content.strip() if isinstance(message.content, str) else not message.content


def checked_messages(request: AddMemoryRequest) -> list[Message]:
    """The request's messages as a list, refused when empty, too many or of an unknown role."""
    messages = (
        [Message(role="user", content=request.messages)]
        if isinstance(request.messages, str)
        else request.messages
    )
    if not messages or all(_is_blank(m) for m in messages):
        # Otherwise "" or "   " answers 200 with no results and still records an empty session turn.
        raise BadRequest("messages must not be empty.", code="empty_messages")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"At most {MAX_MESSAGES} messages per request.", code="too_many_messages")
    for m in messages:
        if m.role not in ROLES:
            raise BadRequest(f"Unknown message role {m.role!r}.", code="invalid_message_role")
    return messages


def message_text(message: Message, notes: list[str]) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.type == "text" and part.text:
            parts.append(part.text)
        elif part.type in ("image_url", "image"):
            notes.append("An image part was dropped: image description needs a vision-capable chat provider.")
    return "\n".join(parts)


def to_turn(messages: list[Message], notes: list[str] | None = None) -> Turn:
    """The non-system messages with text, stripped; image parts still left are dropped with a note."""
    notes = list(notes or [])
    lines = [Line(m.role, m.name, message_text(m, notes).strip()) for m in messages if m.role != "system"]
    return Turn([line for line in lines if line.text], notes)


def _parse_expiration(text: str) -> datetime:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            # A date means "through that day" (UTC).
            return datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(), UTC)
        expires = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC, as Postgres stores it: near year 1 or 9999 that may not exist.
        return (expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError as exc:
        raise BadRequest(
            "expiration_date must be an ISO 8601 date or date-time.", code="invalid_expiration_date"
        ) from exc
    except OverflowError as exc:
        raise BadRequest(
            "expiration_date is out of range: it must fall within the years 1 to 9999 in UTC.",
            code="invalid_expiration_date",
        ) from exc


def expiry(expiration_date: str | None, memory_type: str, config: EffectiveConfig) -> datetime | None:
    """When a new memory expires: the caller's date, else SHORT_TERM's time to live, else never."""
    now = datetime.now(UTC)
    if expiration_date is not None:
        expires = _parse_expiration(expiration_date.strip())
        if expires <= now:
            raise BadRequest("expiration_date must be in the future.", code="invalid_expiration_date")
        return expires
    if memory_type == "SHORT_TERM":
        return now + timedelta(hours=config.short_term_ttl_hours)
    return None


async def record_turn(conn: asyncpg.Connection, config: EffectiveConfig, owner: Owner, turn: Turn) -> None:
    """Keep the conversation's rolling window of messages (system messages aside)."""
    window = config.session_window_size
    if turn.lines and window > 0:
        await repo.record_session_messages(
            conn, owner, [(line.role, line.name, line.text) for line in turn.lines], window
        )
