"""Turning an add request's messages into text, expiry and the session window."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from app.auth.scope import Owner
from app.errors import BadRequest
from app.memories import repo
from app.memories.schemas import AddMemoryRequest, Message
from app.memories.writer import Writer


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


def expiry(request: AddMemoryRequest, memory_type: str, writer: Writer) -> datetime | None:
    ttl_hours = float(
        writer.setting("memory.short-term-ttl-hours", writer.deps.settings.short_term_ttl_hours)
    )
    now = datetime.now(UTC)
    if request.expiration_date is not None:
        text = request.expiration_date.strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                # A date means "through that day" (UTC).
                expires = datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(), UTC)
            else:
                expires = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
        except ValueError as exc:
            raise BadRequest(
                "expiration_date must be an ISO 8601 date or date-time.", code="invalid_expiration_date"
            ) from exc
        if expires <= now:
            raise BadRequest("expiration_date must be in the future.", code="invalid_expiration_date")
        return expires
    if memory_type == "SHORT_TERM":
        return now + timedelta(hours=ttl_hours)
    return None


async def record_turn(writer: Writer, owner: Owner, turn: list[tuple[str, str | None, str]]) -> None:
    """Keep the conversation's rolling window of messages (system messages aside)."""
    window = int(writer.setting("session.window-size", writer.deps.settings.session_window_size))
    if turn and window > 0:
        await repo.record_session_messages(writer.conn, owner, turn, window)
