"""infer=true: one LLM call extracts facts (with entities and a memory type) and decides,
fact by fact, ADD / UPDATE / DELETE / NONE against the owner's nearest memories.

Order matters for "nothing is half-written": every provider call (image descriptions, the
batched embedding of the new messages, the decision call, the batched embedding of the new
texts) happens before the first write, and all writes share the request's transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from app.auth.scope import MemoryAuthScope, Owner
from app.db.session import TenantSession
from app.errors import ProviderError
from app.memories import repo
from app.memories.decisions import Decision, ParsedAnswer, UnreadableAnswer, parse_json_object, read_decisions
from app.memories.deps import MemoryDeps
from app.memories.schemas import AddMemoryRequest, ContentPart, Message, normalise_memory_type
from app.memories.turns import expiry, message_text, record_turn
from app.memories.writer import Writer, content_hash
from app.search.service import candidates_for_texts

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


async def _describe_images(messages: list[Message], deps: MemoryDeps, notes: list[str]) -> list[Message]:
    """Replace image parts by a description from a vision-capable model (one call per image)."""
    out = []
    for message in messages:
        if not _has_images(message) or isinstance(message.content, str):
            out.append(message)
            continue
        if not deps.chat.supports_vision:
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
            result = await deps.chat.complete(
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


def _render_messages(turn: list[tuple[str, str | None, str]]) -> str:
    return "\n".join(f"{role}{f' ({name})' if name else ''}: {text}" for role, name, text in turn)


def _render_candidates(candidates: list[Any]) -> tuple[str, dict[str, UUID]]:
    temp_ids = {f"m{i + 1}": row["id"] for i, row in enumerate(candidates)}
    lines = [
        f"- {tid}: {row['memory']} (type {row['memory_type']})"
        for tid, row in zip(temp_ids, candidates, strict=True)
    ]
    return ("\n".join(lines) or "(none)"), temp_ids


async def _ask(deps: MemoryDeps, system: str, user: str) -> dict[str, Any]:
    result = await deps.chat.complete(
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


async def _decide(
    deps: MemoryDeps, context: str, new_messages: str, candidates: list[Any]
) -> tuple[ParsedAnswer, int]:
    """The decisions and how many LLM calls they took."""
    listing, temp_ids = _render_candidates(candidates)
    if deps.settings.pipeline_mode == TWO_CALL:
        extracted = await _ask(deps, prompt("extract"), f"{context}NEW MESSAGES:\n{new_messages}")
        raw = extracted.get("facts")
        facts: list[Any] = raw if isinstance(raw, list) else []
        answer = await _ask(
            deps,
            prompt("decide"),
            f"EXISTING MEMORIES:\n{listing}\n\nNEW FACTS:\n{_json_lines(facts)}",
        )
        return read_decisions(answer, temp_ids, default_event="ADD"), 2
    answer = await _ask(
        deps,
        prompt("extract_and_decide"),
        f"EXISTING MEMORIES:\n{listing}\n\n{context}NEW MESSAGES:\n{new_messages}",
    )
    return read_decisions(answer, temp_ids, default_event="ADD"), 1


def _json_lines(items: list[Any]) -> str:
    return "\n".join(json.dumps(item, ensure_ascii=False) for item in items) or "(none)"


async def infer(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner: Owner,
    messages: list[Message],
    request: AddMemoryRequest,
    deps: MemoryDeps,
) -> dict[str, Any]:
    notes: list[str] = []
    messages = await _describe_images(messages, deps, notes)
    turn = [(m.role, m.name, message_text(m, notes)) for m in messages if m.role != "system"]
    turn = [(role, name, text.strip()) for role, name, text in turn if text.strip()]
    results: list[dict[str, Any]] = []
    if not turn:
        return {"results": results, "notes": sorted(set(notes))} if notes else {"results": results}

    deps.check_dimensions()
    message_vectors = await deps.embedder.embed([text for _, _, text in turn])
    # Reads before the LLM call use a connection that goes back to the pool right away: no
    # pooled connection (let alone a transaction) waits on the model.
    async with db.reader() as conn:
        candidates = await candidates_for_texts(conn, owner, [t for _, _, t in turn], message_vectors, deps)
        window = await repo.recent_session_messages(conn, owner, MAX_CONTEXT_MESSAGES)
    context = f"EARLIER IN THIS CONVERSATION:\n{_render_messages(window)}\n\n" if window else ""
    parsed, calls = await _decide(deps, context, _render_messages(turn), candidates)

    forced_type = normalise_memory_type(request.memory_type)
    by_id = {row["id"]: row for row in candidates}
    touched: set[UUID] = set()
    adds: list[Decision] = []
    updates: list[Decision] = []
    deletes: list[Decision] = []
    nones: list[Decision] = []
    skipped = list(parsed.skipped)
    for decision in parsed.decisions:
        if decision.target is not None and decision.target in touched:
            skipped.append({"text": decision.text, "reason": "a second decision on the same memory"})
            continue
        if decision.target is not None and decision.event in ("UPDATE", "DELETE"):
            touched.add(decision.target)
        {"ADD": adds, "UPDATE": updates, "DELETE": deletes, "NONE": nones}[decision.event].append(decision)

    # One batched embedding call for every new text, still before the first write.
    texts = list(dict.fromkeys(d.text for d in adds + updates))
    vectors = await deps.embedder.embed(texts) if texts else []
    vector_of = dict(zip(texts, vectors, strict=True))

    writer = await Writer.open(db, scope, deps)
    for decision in nones:
        writer.unchanged()
        target = by_id.get(decision.target) if decision.target else None
        results.append(
            {
                "id": str(target["id"]) if target else None,
                "memory": target["memory"] if target else decision.text,
                "event": "NONE",
            }
        )
    metadata = dict(request.metadata or {})
    seen_hashes: set[str] = set()
    for decision in adds:
        # The same fact again is a NONE, whatever the model said.
        digest = content_hash(decision.text)
        existing = await repo.find_live_by_hash(writer.conn, owner, digest)
        if existing is not None or digest in seen_hashes:
            writer.unchanged()
            results.append(
                {"id": str(existing["id"]) if existing else None, "memory": decision.text, "event": "NONE"}
            )
            continue
        seen_hashes.add(digest)
        memory_type = forced_type or decision.memory_type or "LONG_TERM"
        row = await writer.add(
            owner,
            decision.text,
            vector_of[decision.text],
            memory_type=memory_type,
            metadata=metadata,
            expires_at=expiry(request, memory_type, writer),
            entities=decision.entities,
        )
        results.append(
            {"id": str(row["id"]), "memory": decision.text, "event": "ADD", "memory_type": memory_type}
        )
    for decision in updates + deletes:
        assert decision.target is not None
        # The candidates were read before the model answered: lock each target and check it is
        # still there (and still this owner's) before changing it.
        current = await repo.find_by_id_for_owner(writer.conn, decision.target, owner, for_update=True)
        if current is None:
            skipped.append({"text": decision.text, "reason": "the memory was deleted meanwhile"})
            continue
        if decision.event == "DELETE":
            row = await repo.soft_delete(writer.conn, decision.target, owner)
            if row is not None:
                await writer.deleted([row])
                results.append({"id": str(row["id"]), "memory": row["memory"], "event": "DELETE"})
            continue
        row = await writer.update(
            current,
            owner,
            text=decision.text,
            vector=vector_of[decision.text],
            metadata={**current["metadata"], **metadata},
            entities=decision.entities,
        )
        if row is not None:
            results.append(
                {
                    "id": str(row["id"]),
                    "memory": decision.text,
                    "event": "UPDATE",
                    "previous_memory": current["memory"],
                    "memory_type": row["memory_type"],
                }
            )
    await writer.flush()
    await record_turn(writer, owner, turn)
    log.info(
        "memories_inferred",
        llm_calls=calls,
        candidates=len(candidates),
        adds=len(adds),
        updates=len(updates),
        deletes=len(deletes),
        skipped=len(skipped),
    )
    body: dict[str, Any] = {"results": results}
    if skipped:
        body["skipped"] = skipped
    if notes:
        body["notes"] = sorted(set(notes))
    return body
