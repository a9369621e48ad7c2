"""Planning an add: verbatim (every message with infer=false; only the user's with infer=true
and no chat provider), or from the model, where one LLM call extracts facts (with entities and
a memory type) and decides, fact by fact, ADD / UPDATE / DELETE / NONE against the owner's
nearest memories.

Order matters for "nothing is half-written": every provider call (image descriptions, the
batched embedding of the new messages, the decision call) happens before the first write;
the service embeds the plan's new texts and applies it in the request's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from app.auth.scope import Owner
from app.core.context import MemoryDeps
from app.core.retrieval.service import candidates_for_texts
from app.core.schemas import MAX_MEMORY_CHARS
from app.db.session import TenantSession
from app.errors import BadRequest, ProviderError
from app.memories import repo
from app.memories.decisions import Decision, ParsedAnswer, UnreadableAnswer, parse_json_object, read_decisions
from app.memories.schemas import ContentPart, Message
from app.memories.turns import Line, Turn
from app.providers.chat import ChatProvider

log = structlog.get_logger(__name__)

PROMPTS = Path(__file__).resolve().parent / "prompts"
TWO_CALL = "two-call"
MAX_CONTEXT_MESSAGES = 10


def prompt(name: str) -> str:
    return (PROMPTS / f"{name}.txt").read_text()


def _has_images(message: Message) -> bool:
    return not isinstance(message.content, str) and any(
        p.type in ("image_url", "image") for p in message.content
    )


async def describe_images(messages: list[Message], chat: ChatProvider, notes: list[str]) -> list[Message]:
    """Replace image parts by a description from a vision-capable model (one call per image)."""
    out = []
    for message in messages:
        if not _has_images(message) or isinstance(message.content, str):
            out.append(message)
            continue
        if not chat.supports_vision:
            notes.append("An image part was dropped: the configured chat model cannot see images.")
            out.append(message)
            continue
        parts: list[ContentPart] = []
        for part in message.content:
            if part.type not in ("image_url", "image"):
                parts.append(part)
                continue
            url = part.image_url.get("url") if isinstance(part.image_url, dict) else part.image_url
            if not isinstance(url, str) or not url.startswith(("https://", "data:image/")):
                notes.append("An image part was dropped: only https URLs and data:image URIs are accepted.")
                continue
            result = await chat.complete(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": prompt("describe_image")},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    }
                ],
                json_mode=False,
            )
            parts.append(ContentPart(type="text", text=f"[Image: {result.text.strip()}]"))
        out.append(Message(role=message.role, content=parts, name=message.name))
    return out


def _render_messages(lines: list[Line]) -> str:
    return "\n".join(f"{line.role}{f' ({line.name})' if line.name else ''}: {line.text}" for line in lines)


def _render_candidates(candidates: list[Any]) -> tuple[str, dict[str, UUID]]:
    temp_ids = {f"m{i + 1}": row["id"] for i, row in enumerate(candidates)}
    lines = [
        f"- {tid}: {row['memory']} (type {row['memory_type']}{', immutable' if row['immutable'] else ''})"
        for tid, row in zip(temp_ids, candidates, strict=True)
    ]
    return ("\n".join(lines) or "(none)"), temp_ids


async def _ask(chat: ChatProvider, deps: MemoryDeps, system: str, user: str) -> dict[str, Any]:
    result = await chat.complete(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        json_mode=True,
        max_tokens=deps.settings.chat_max_tokens,
    )
    try:
        return parse_json_object(result.text)
    except UnreadableAnswer as exc:
        raise ProviderError(
            "The chat model's answer held no JSON object; nothing was stored.", code="provider_bad_answer"
        ) from exc


def with_instructions(system: str, instructions: str | None) -> str:
    """The extraction prompt, with the application's instructions for this add (if any) appended
    as their own delimited section: they guide what is remembered, never the answer's format."""
    if not instructions:
        return system
    return f"{system.rstrip()}\n\n{prompt('custom_instructions').format(instructions=instructions)}"


async def _decide(
    chat: ChatProvider,
    deps: MemoryDeps,
    context: str,
    new_messages: str,
    candidates: list[Any],
    instructions: str | None = None,
) -> tuple[ParsedAnswer, int]:
    """The decisions and how many LLM calls they took."""
    listing, temp_ids = _render_candidates(candidates)
    if deps.settings.pipeline_mode == TWO_CALL:
        system = with_instructions(prompt("extract"), instructions)
        extracted = await _ask(chat, deps, system, f"{context}NEW MESSAGES:\n{new_messages}")
        raw = extracted.get("facts")
        facts: list[Any] = raw if isinstance(raw, list) else []
        answer = await _ask(
            chat,
            deps,
            prompt("decide"),
            f"EXISTING MEMORIES:\n{listing}\n\nNEW FACTS:\n{_json_lines(facts)}",
        )
        return read_decisions(answer, temp_ids, default_event="ADD"), 2
    answer = await _ask(
        chat,
        deps,
        with_instructions(prompt("extract_and_decide"), instructions),
        f"EXISTING MEMORIES:\n{listing}\n\n{context}NEW MESSAGES:\n{new_messages}",
    )
    return read_decisions(answer, temp_ids, default_event="ADD"), 1


def _json_lines(items: list[Any]) -> str:
    return "\n".join(json.dumps(item, ensure_ascii=False) for item in items) or "(none)"


@dataclass
class Plan:
    """What an add will do: decisions against the candidates it saw, and what it skipped."""

    turn: Turn
    decisions: list[Decision] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    candidates: dict[UUID, asyncpg.Record] = field(default_factory=dict)
    llm_calls: int = 0

    @property
    def new_texts(self) -> list[str]:
        """Texts to embed before the first write: what ADD and UPDATE decisions store."""
        return list(dict.fromkeys(d.text for d in self.decisions if d.event in ("ADD", "UPDATE")))


def check_verbatim(turn: Turn) -> None:
    """A turn stored as it is must fit in a memory."""
    for line in turn.lines:
        if len(line.text) > MAX_MEMORY_CHARS:
            raise BadRequest(
                f"A message is longer than {MAX_MEMORY_CHARS} characters.", code="message_too_long"
            )


def plan_verbatim(turn: Turn, *, user_only: bool = False) -> Plan:
    """Each message of the turn becomes a memory as it is (its duplicates become NONE later).

    `user_only` keeps only what the user said: without a model to tell facts from chatter, an
    assistant's "That sounds demanding!" is not a memory. The other lines still go to the
    session window as context.
    """
    check_verbatim(turn)
    lines = [line for line in turn.lines if line.role == "user"] if user_only else turn.lines
    decisions = [Decision("ADD", line.text, None, None, [], line.name, line.role) for line in lines]
    return Plan(turn, decisions)


def _one_decision_per_target(parsed: ParsedAnswer) -> tuple[list[Decision], list[dict[str, Any]]]:
    kept: list[Decision] = []
    skipped = list(parsed.skipped)
    touched: set[UUID] = set()
    for decision in parsed.decisions:
        if decision.target is not None and decision.target in touched:
            skipped.append({"text": decision.text, "reason": "a second decision on the same memory"})
            continue
        if decision.target is not None and decision.event in ("UPDATE", "DELETE"):
            touched.add(decision.target)
        kept.append(decision)
    return kept, skipped


async def plan_inferred(
    db: TenantSession,
    deps: MemoryDeps,
    chat: ChatProvider,
    owner: Owner,
    turn: Turn,
    instructions: str | None = None,
) -> Plan:
    """Ask the model what the turn means for the owner's nearest memories."""
    if not turn.lines:
        return Plan(turn)
    deps.check_dimensions()
    message_vectors = await deps.embedder.embed(turn.texts, tenant=deps.tenant_ref)
    # Reads before the LLM call use a connection that goes back to the pool right away: no
    # pooled connection (let alone a transaction) waits on the model.
    async with db.reader() as conn:
        candidates = await candidates_for_texts(conn, deps, owner, turn.texts, message_vectors)
        window = await repo.recent_session_messages(conn, owner, MAX_CONTEXT_MESSAGES)
    earlier = [Line(role, name, text) for role, name, text in window]
    context = f"EARLIER IN THIS CONVERSATION:\n{_render_messages(earlier)}\n\n" if earlier else ""
    parsed, calls = await _decide(chat, deps, context, _render_messages(turn.lines), candidates, instructions)
    decisions, skipped = _one_decision_per_target(parsed)
    return Plan(turn, decisions, skipped, {row["id"]: row for row in candidates}, calls)
