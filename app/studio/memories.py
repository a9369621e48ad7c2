"""The Brain Panel: an owner's memories by type and metadata, search with its score breakdown,
one memory's edit form and history, deleting one or all of an owner's."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from litestar import Request, get, post
from litestar.response import Redirect, Template

from app.core.schemas import MEMORY_TYPES
from app.errors import AppError, BadRequest, NotFound
from app.memories import overview
from app.memories import service as memories
from app.memories.responses import MemoryPage
from app.memories.schemas import UpdateMemoryRequest
from app.search import service as search
from app.search.schemas import SearchRequest
from app.studio.web import Studio, StudioCall

PAGE_SIZE = 25
GROUP_SIZE = 5
SEARCH_TOP_K = 20
OWNER_FIELDS = ("user_id", "agent_id", "run_id")


def owner_ids(user_id: str | None, agent_id: str | None, run_id: str | None) -> dict[str, str | None]:
    ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    return {k: (v.strip() or None) if v else None for k, v in ids.items()}


def tenant_wide(ids: dict[str, str | None]) -> dict[str, str | None]:
    """Studio with no owner picked reads the whole tenant, on purpose (scope "tenant")."""
    return ids if any(ids.values()) else {**ids, "scope": "tenant"}


def owner_query(ids: dict[str, str | None], **more: Any) -> str:
    return urlencode({k: v for k, v in {**ids, **more}.items() if v not in (None, "")})


def parse_memory_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("No memory with this id.", code="memory_not_found") from None


def metadata_filter(key: str | None, value: str | None) -> dict[str, Any] | None:
    return {key.strip(): value or "*"} if key and key.strip() else None


@get("/memories", name="studio_memories")
async def memories_page(
    request: Request[Any, Any, Any],
    studio: Studio,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    memory_type: str | None = None,
    meta_key: str | None = None,
    meta_value: str | None = None,
    page: int = 1,
    done: str | None = None,
    group: str | None = None,
) -> Template:
    session = studio.require(request)
    ids = owner_ids(user_id, agent_id, run_id)
    error = listing = None
    groups: dict[str, MemoryPage] | None = None
    async with studio.tenant(request, session) as call:
        owners = await overview.owners(call.db, call.scope)
        counts = await overview.type_counts(call.db, call.scope, ids)
        try:
            if group == "type":
                groups = await _by_type(call, ids, counts, metadata_filter(meta_key, meta_value))
            else:
                listing = await _one_page(call, ids, memory_type, metadata_filter(meta_key, meta_value), page)
        except AppError as exc:
            error = exc.message
    filters = {"memory_type": memory_type, "meta_key": meta_key, "meta_value": meta_value}
    return studio.page(
        request,
        session,
        "memories.html",
        status_code=400 if error else 200,
        tenant=call.tenant,
        ids=ids,
        owners=owners,
        counts=counts,
        types=MEMORY_TYPES,
        listing=listing,
        groups=groups,
        group_size=GROUP_SIZE,
        error=error,
        done=done,
        filters=filters,
        owner_query=owner_query,
        pages=_pages(listing.total if listing else 0),
    )


async def _one_page(
    call: StudioCall, ids: dict[str, str | None], memory_type: str | None, filters: Any, page: int
) -> MemoryPage:
    return await memories.list_memories(
        call.db,
        call.scope,
        tenant_wide(ids),
        memory_type=memory_type or None,
        filters=filters,
        page=page,
        page_size=PAGE_SIZE,
        include_expired=False,
        deps=call.deps,
    )


async def _by_type(
    call: StudioCall, ids: dict[str, str | None], counts: dict[str, int], filters: Any
) -> dict[str, MemoryPage]:
    """The newest few memories of each type that has any: the Brain Panel's grouped view."""
    grouped: dict[str, MemoryPage] = {}
    for memory_type in (t for t in MEMORY_TYPES if counts.get(t)):
        grouped[memory_type] = await memories.list_memories(
            call.db,
            call.scope,
            tenant_wide(ids),
            memory_type=memory_type,
            filters=filters,
            page=1,
            page_size=GROUP_SIZE,
            include_expired=False,
            deps=call.deps,
        )
    return grouped


def _pages(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


async def _memory_context(studio: Studio, request: Request[Any, Any, Any], memory_id: UUID) -> dict[str, Any]:
    session = studio.require(request)
    async with studio.tenant(request, session) as call:
        memory = await memories.get_memory(call.db, call.scope, memory_id)
        history = await memories.memory_history(call.db, call.scope, memory_id)
        entities = await memories.memory_entities(call.db, call.scope, memory_id)
    return {
        "session": session,
        "tenant": call.tenant,
        "memory": memory,
        "history": history,
        "entities": entities,
    }


@get("/memories/{memory_id:str}", name="studio_memory")
async def memory_page(
    request: Request[Any, Any, Any], studio: Studio, memory_id: str, saved: str | None = None
) -> Template:
    context = await _memory_context(studio, request, parse_memory_id(memory_id))
    session = context.pop("session")
    metadata_text = json.dumps(context["memory"].metadata, indent=2, ensure_ascii=False)
    return studio.page(request, session, "memory.html", saved=saved, metadata_text=metadata_text, **context)


def _update_request(form: dict[str, str]) -> UpdateMemoryRequest:
    raw = form.get("metadata", "").strip() or "{}"
    try:
        metadata = json.loads(raw)
    except ValueError:
        raise BadRequest("metadata must be a JSON object.", code="invalid_metadata") from None
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object.", code="invalid_metadata")
    return UpdateMemoryRequest(text=form.get("text", ""), metadata=metadata)


@post("/memories/{memory_id:str}", name="studio_memory_update", status_code=303)
async def update_memory(
    request: Request[Any, Any, Any], studio: Studio, memory_id: str
) -> Redirect | Template:
    session = studio.require(request)
    form = await studio.form(request, session)
    parsed_id = parse_memory_id(memory_id)
    try:
        update = _update_request(form)
        async with studio.tenant(request, session) as call:
            await memories.update_memory(call.db, call.scope, parsed_id, update, call.deps)
    except AppError as exc:
        if exc.status_code == 404:
            raise
        context = await _memory_context(studio, request, parsed_id)
        context.pop("session")
        return studio.page(
            request,
            session,
            "memory.html",
            status_code=400,
            error=exc.message,
            metadata_text=form.get("metadata", ""),
            text_value=form.get("text", ""),
            **context,
        )
    return Redirect(f"/studio/memories/{parsed_id}?saved=1", status_code=303)


@post("/memories/{memory_id:str}/delete", name="studio_memory_delete", status_code=303)
async def delete_memory(request: Request[Any, Any, Any], studio: Studio, memory_id: str) -> Redirect:
    session = studio.require(request)
    await studio.form(request, session)
    parsed_id = parse_memory_id(memory_id)
    async with studio.tenant(request, session) as call:
        memory = await memories.get_memory(call.db, call.scope, parsed_id)
        await memories.delete_memory(call.db, call.scope, parsed_id, call.deps)
    ids = owner_ids(memory.user_id, memory.agent_id, memory.run_id)
    return Redirect(f"/studio/memories?{owner_query(ids, done='deleted')}", status_code=303)


@post("/delete-all", name="studio_memories_delete_all", status_code=303)
async def delete_all(request: Request[Any, Any, Any], studio: Studio) -> Redirect:
    """Every memory of one owner, once the owner's id is typed again to confirm."""
    session = studio.require(request)
    form = await studio.form(request, session)
    ids = owner_ids(form.get("user_id"), form.get("agent_id"), form.get("run_id"))
    named = [v for v in ids.values() if v]
    if not named or form.get("confirm", "").strip() != named[0]:
        return Redirect(f"/studio/memories?{owner_query(ids, done='not-confirmed')}", status_code=303)
    async with studio.tenant(request, session) as call:
        result = await memories.delete_all_memories(call.db, call.scope, ids, None, call.deps)
    return Redirect(f"/studio/memories?{owner_query(ids, done=f'deleted-{result.deleted}')}", status_code=303)


@get("/search", name="studio_search")
async def search_page(
    request: Request[Any, Any, Any],
    studio: Studio,
    q: str | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    memory_type: str | None = None,
) -> Template:
    session = studio.require(request)
    ids = owner_ids(user_id, agent_id, run_id)
    results = error = None
    async with studio.tenant(request, session) as call:
        if q:
            body = SearchRequest(
                query=q,
                top_k=SEARCH_TOP_K,
                memory_type=memory_type or None,
                user_id=ids["user_id"],
                agent_id=ids["agent_id"],
                run_id=ids["run_id"],
                scope=None if any(ids.values()) else "tenant",
            )
            try:
                results = (await search.search(call.db, call.scope, body, call.deps)).body.results
            except AppError as exc:
                error = exc.message
    return studio.page(
        request,
        session,
        "search.html",
        status_code=400 if error else 200,
        tenant=call.tenant,
        q=q or "",
        ids=ids,
        memory_type=memory_type or "",
        types=MEMORY_TYPES,
        results=results,
        error=error,
    )
