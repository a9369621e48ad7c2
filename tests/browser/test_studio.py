"""Studio in a real browser: sign in, the Brain Panel, search, edit and history, delete, the
graph, settings, reset, admin migration, and the refusals. Every test also reads the database.

One `python -m app serve` and one chromium for the module; tenants are made through the admin API.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.db.dsn import with_database
from app.settings import Settings
from app.studio.session import COOKIE_NAME, SessionCodec, StudioSession, session_secret
from tests.browser.conftest import axe_violations
from tests.conftest import DIMS
from testsupport.provider_server import FakeProviderServer
from testsupport.serve import free_port, new_database, running_service

INHERITED_PREFIXES = ("NUBASE_", "MEM_", "LOG_", "OPENAI_", "ANTHROPIC_", "MEMORY_")


@dataclass
class Served:
    url: str
    admin_key: str
    master_key: str
    database_url: str
    control_dsn: str


@dataclass
class TenantInfo:
    ref: str
    name: str
    service_key: str
    db_dsn: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(
    database_url: str, fake_provider: FakeProviderServer, tmp_path_factory: Any
) -> AsyncIterator[Served]:
    control_dsn = await new_database(database_url, "memory_studio")
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    admin_key = "studio-admin-" + secrets.token_hex(16)
    env.update(
        DATABASE_URL=control_dsn,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        MEM_ADMIN_KEY=admin_key,
        MEM_MASTER_KEY=master_key,
        MEM_PUBLIC_DOCS="true",
        NUBASE_MEM_EMBEDDING_PROVIDER="generic",
        NUBASE_MEM_EMBEDDING_MODEL="fake-embed",
        NUBASE_MEM_EMBEDDING_DIMENSIONS=str(DIMS),
        NUBASE_MEM_EMBEDDING_BASE_URL=fake_provider.openai_base_url,
        NUBASE_MEM_EMBEDDING_API_KEY="test",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path_factory.mktemp("studio") / "service.log"
    with running_service(env, log) as (url, _):
        yield Served(url, admin_key, master_key, database_url, control_dsn)


def _create_tenant(served: Served, name: str) -> TenantInfo:
    admin = {"authorization": f"Bearer {served.admin_key}"}
    r = httpx.post(f"{served.url}/auth/v1/admin/tenants", json={"name": name}, headers=admin, timeout=60)
    assert r.status_code == 201, r.text
    body = r.json()
    return TenantInfo(
        body["ref"], name, body["service_role_key"], with_database(served.database_url, f"mem_{body['ref']}")
    )


def _add(served: Served, tenant: TenantInfo, text: str, user_id: str = "alice", **extra: Any) -> str:
    r = httpx.post(
        f"{served.url}/mem/v1/memories",
        json={"messages": [{"role": "user", "content": text}], "user_id": user_id, "infer": False, **extra},
        headers={"apikey": tenant.service_key},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["results"][0]["id"])


SEED = [
    ("Alice is allergic to peanuts", "LONG_TERM", {"source": "onboarding"}),
    ("Alice met Bob in Paris last spring", "EPISODIC", {"source": "chat"}),
    ("Paris is the capital of France", "SEMANTIC", {"source": "chat"}),
    ("To brew tea, Alice boils water first", "PROCEDURAL", {}),
    ("Alice is reading a book about Rust today", "SHORT_TERM", {}),
]


@pytest.fixture(scope="module")
def alpha(served: Served) -> TenantInfo:
    tenant = _create_tenant(served, "Studio Alpha")
    for text, memory_type, metadata in SEED:
        _add(served, tenant, text, memory_type=memory_type, metadata=metadata)
    _add(served, tenant, "Bob likes Paris in winter", user_id="bob")
    return tenant


@pytest.fixture(scope="module")
def beta(served: Served) -> TenantInfo:
    tenant = _create_tenant(served, "Studio Beta")
    _add(served, tenant, "Beta's secret plan lives in Berlin", user_id="carol")
    return tenant


async def _db(tenant: TenantInfo) -> asyncpg.Connection:
    return await asyncpg.connect(tenant.db_dsn)


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any, served: Served) -> AsyncIterator[Any]:
    """A fresh browser profile per test that refuses every request leaving 127.0.0.1."""
    # bypass_csp: axe-core is injected as an inline script, which Studio's CSP (rightly) refuses.
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    outside: list[str] = []

    async def only_local(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "data:", "about:")):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await ctx.route("**/*", only_local)
    ctx.outside = outside
    try:
        yield ctx
    finally:
        await ctx.close()
    assert outside == [], f"requests left the machine: {outside}"


async def _sign_in(ctx: Any, served: Served, key: str) -> Any:
    page = await ctx.new_page()
    await page.goto(f"{served.url}/studio/login")
    await page.fill("#key", key)
    await page.click("button[type=submit]:has-text('Sign in')")
    await page.wait_for_load_state()
    return page


async def _check_page(page: Any, output_dir: Path, name: str) -> None:
    """No serious or critical axe violation, and a screenshot under test-output/studio."""
    assert await axe_violations(page) == [], name
    await page.screenshot(path=str(output_dir / f"{name}.png"), full_page=True)


async def _cookie(ctx: Any) -> dict[str, Any]:
    (cookie,) = [c for c in await ctx.cookies() if c["name"] == COOKIE_NAME]
    return dict(cookie)


# --- sign-in and the refusals -------------------------------------------------------------------


async def test_a_wrong_key_is_refused_and_the_key_never_reaches_the_page(context, served, alpha, output_dir):
    page = await _sign_in(context, served, "not-a-key-" + secrets.token_hex(8))
    assert "/studio/login" in page.url
    assert "not the platform admin key" in await page.inner_text("#login-error")
    await _check_page(page, output_dir, "login-refused")
    cookie = await _cookie(context)
    session = SessionCodec(session_secret(Settings(master_key=served.master_key))).decode(cookie["value"])
    assert session is not None and not session.signed_in
    conn = await _db(alpha)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL") == len(SEED) + 1
        )
    finally:
        await conn.close()


async def test_a_service_role_key_opens_its_tenant_in_an_httponly_strict_cookie(
    context, served, alpha, output_dir
):
    page = await _sign_in(context, served, alpha.service_key)
    assert page.url.endswith("/studio/overview")
    headers = (await page.request.get(page.url)).headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    await page.wait_for_selector("#total-memories")
    assert await page.inner_text("#total-memories") == str(len(SEED) + 1)
    html = await page.content()
    assert alpha.service_key not in html and alpha.service_key not in page.url
    cookie = await _cookie(context)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/studio"
    assert alpha.service_key not in cookie["value"], "the cookie is encrypted, not just signed"
    await _check_page(page, output_dir, "overview")
    conn = await _db(alpha)
    try:
        by_type = dict(
            await conn.fetch(
                "SELECT memory_type, count(*) FROM mem.memories WHERE deleted_at IS NULL GROUP BY 1"
            )
        )
        jobs = dict(await conn.fetch("SELECT status, count(*) FROM mem.jobs GROUP BY 1"))
    finally:
        await conn.close()
    for status in ("pending", "running", "failed"):
        assert await page.inner_text(f"#queue-{status}") == str(jobs.get(status.upper(), 0))
    table = await page.inner_text("#type-counts")
    for memory_type, n in by_type.items():
        assert re.search(rf"{memory_type}\s+{n}", table), table


async def test_an_expired_session_signs_out_and_changes_nothing(context, served, alpha):
    codec = SessionCodec(session_secret(Settings(master_key=served.master_key)))
    stale = StudioSession(csrf="c" * 43, tenant_key=alpha.service_key, tenant_ref=alpha.ref)
    value = codec.encode(stale, at=time.time() - codec.max_age - 60)
    await context.add_cookies([{"name": COOKIE_NAME, "value": value, "url": f"{served.url}/studio"}])
    page = await context.new_page()
    conn = await _db(alpha)
    try:
        memory_id = await conn.fetchval("SELECT id FROM mem.memories WHERE deleted_at IS NULL LIMIT 1")
        await page.goto(f"{served.url}/studio/memories")
        assert "/studio/login?reason=expired" in page.url
        assert "session expired" in await page.inner_text("main")
        # A form posted with the stale cookie and its (once valid) CSRF token does nothing.
        await context.add_cookies([{"name": COOKIE_NAME, "value": value, "url": f"{served.url}/studio"}])
        r = await page.request.post(
            f"{served.url}/studio/memories/{memory_id}/delete", form={"csrf_token": "c" * 43}, max_redirects=0
        )
        assert r.status == 303 and "/studio/login" in r.headers["location"]
        assert await conn.fetchval("SELECT deleted_at FROM mem.memories WHERE id = $1", memory_id) is None
    finally:
        await conn.close()


async def test_another_tenants_memory_id_in_the_url_is_a_404(context, served, alpha, beta):
    conn = await _db(beta)
    try:
        theirs = await conn.fetchval("SELECT id FROM mem.memories LIMIT 1")
        page = await _sign_in(context, served, alpha.service_key)
        response = await page.goto(f"{served.url}/studio/memories/{theirs}")
        assert response.status == 404
        assert "Berlin" not in await page.content()
        r = await page.request.post(
            f"{served.url}/studio/memories/{theirs}/delete",
            form={"csrf_token": await page.get_attribute("input[name=csrf_token]", "value")},
            max_redirects=0,
        )
        assert r.status == 404
        assert await conn.fetchval("SELECT deleted_at FROM mem.memories WHERE id = $1", theirs) is None
    finally:
        await conn.close()


async def test_a_forged_form_without_the_csrf_token_is_refused(context, served, alpha):
    page = await _sign_in(context, served, alpha.service_key)
    conn = await _db(alpha)
    try:
        memory_id = await conn.fetchval("SELECT id FROM mem.memories WHERE deleted_at IS NULL LIMIT 1")
        for form in ({}, {"csrf_token": "forged"}):
            r = await page.request.post(f"{served.url}/studio/memories/{memory_id}/delete", form=form)
            assert r.status == 403 and "csrf_invalid" in await r.text()
        r = await page.request.post(f"{served.url}/studio/reset", form={"confirm": alpha.name})
        assert r.status == 403
        assert await conn.fetchval("SELECT deleted_at FROM mem.memories WHERE id = $1", memory_id) is None
        assert (
            await conn.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL") == len(SEED) + 1
        )
    finally:
        await conn.close()


# --- the Brain Panel ----------------------------------------------------------------------------


async def test_browse_by_owner_type_and_metadata(context, served, alpha, output_dir):
    page = await _sign_in(context, served, alpha.service_key)
    await page.goto(f"{served.url}/studio/memories")
    assert "alice (5)" in await page.inner_text("#owners")
    await page.click("#owners a:has-text('alice')")
    await page.wait_for_selector("#memory-list")
    assert await page.inner_text("#listing-total") == "5 memories · page 1 of 1"
    await page.click("#type-tabs a[data-type=EPISODIC]")
    await page.wait_for_load_state()
    rows = await page.locator("#memory-list tbody tr").all_inner_texts()
    assert len(rows) == 1 and "Alice met Bob in Paris" in rows[0]
    await _check_page(page, output_dir, "memories")
    await page.click("#group-by-type")
    await page.wait_for_selector("section.group")
    groups = await page.locator("section.group").evaluate_all("ss => ss.map(s => s.dataset.type)")
    assert groups == ["LONG_TERM", "SHORT_TERM", "EPISODIC", "SEMANTIC", "PROCEDURAL"]
    await page.goto(f"{served.url}/studio/memories?user_id=alice")
    await page.fill("#meta_key", "source")
    await page.fill("#meta_value", "chat")
    await page.click("form[aria-label=Filter] button")
    await page.wait_for_load_state()
    shown = set(await page.locator("#memory-list tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)"))
    conn = await _db(alpha)
    try:
        expected = {
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM mem.memories WHERE user_id = 'alice' AND metadata->>'source' = 'chat' AND deleted_at IS NULL"
            )
        }
    finally:
        await conn.close()
    assert shown == expected and len(expected) == 2


async def test_search_shows_the_score_breakdown(context, served, alpha, output_dir):
    page = await _sign_in(context, served, alpha.service_key)
    await page.goto(f"{served.url}/studio/search")
    await page.fill("#q", "peanuts")
    await page.fill("#s-user", "alice")
    await page.click("form[role=search] button")
    await page.wait_for_selector("#results")
    first = page.locator("#results tbody tr").first
    assert "Alice is allergic to peanuts" in await first.inner_text()
    keyword = float((await first.locator(".breakdown-keyword").inner_text()).strip())
    assert keyword > 0
    for part in ("semantic", "entity"):
        assert re.fullmatch(r"\d\.\d{3}", (await first.locator(f".breakdown-{part}").inner_text()).strip())
    await _check_page(page, output_dir, "search")
    conn = await _db(alpha)
    try:
        row = await conn.fetchrow(
            "SELECT user_id, deleted_at FROM mem.memories WHERE id = $1::uuid",
            await first.get_attribute("data-id"),
        )
    finally:
        await conn.close()
    assert row["user_id"] == "alice" and row["deleted_at"] is None


async def test_edit_grows_the_history_then_delete(context, served, alpha, output_dir):
    memory_id = _add(served, alpha, "Alice drinks coffee every morning")
    page = await _sign_in(context, served, alpha.service_key)
    await page.goto(f"{served.url}/studio/memories/{memory_id}")
    assert await page.locator("#history li").count() == 1
    await page.fill("#text", "Alice drinks green tea every morning")
    await page.fill("#metadata", '{"source": "studio"}')
    await page.click("#edit button")
    await page.wait_for_selector("text=Saved.")
    events = await page.locator("#history li").evaluate_all("ls => ls.map(l => l.dataset.event)")
    assert events == ["ADD", "UPDATE"]
    assert "Alice drinks coffee every morning" in await page.inner_text("#history")
    await _check_page(page, output_dir, "memory")
    # A bad metadata value is shown inline and changes nothing.
    await page.fill("#metadata", "[1, 2]")
    await page.click("#edit button")
    assert "metadata must be a JSON object" in await page.inner_text("#edit-error")
    conn = await _db(alpha)
    try:
        row = await conn.fetchrow("SELECT memory, metadata FROM mem.memories WHERE id = $1", memory_id)
        assert row["memory"] == "Alice drinks green tea every morning"
        assert (
            await conn.fetchval("SELECT count(*) FROM mem.memory_history WHERE memory_id = $1", memory_id)
            == 2
        )
        await page.goto(f"{served.url}/studio/memories/{memory_id}")
        await page.click("#delete button")
        await page.wait_for_selector("text=Memory deleted.")
        assert await conn.fetchval("SELECT deleted_at FROM mem.memories WHERE id = $1", memory_id) is not None
        events = [
            r["event"]
            for r in await conn.fetch(
                "SELECT event FROM mem.memory_history WHERE memory_id = $1 ORDER BY id", memory_id
            )
        ]
        assert events == ["ADD", "UPDATE", "DELETE"]
    finally:
        await conn.close()


async def test_delete_all_of_an_owner_needs_the_owner_typed(context, served, alpha):
    for text in ("Dave likes jazz", "Dave plays chess"):
        _add(served, alpha, text, user_id="dave")
    page = await _sign_in(context, served, alpha.service_key)
    await page.goto(f"{served.url}/studio/memories?user_id=dave")
    conn = await _db(alpha)
    try:
        await page.fill("#confirm-owner", "davey")
        await page.click("#delete-all button")
        await page.wait_for_selector("text=Not deleted")
        live = "SELECT count(*) FROM mem.memories WHERE user_id = 'dave' AND deleted_at IS NULL"
        assert await conn.fetchval(live) == 2
        await page.fill("#confirm-owner", "dave")
        await page.click("#delete-all button")
        await page.wait_for_selector("text=2 memories deleted.")
        assert await conn.fetchval(live) == 0
        assert (
            await conn.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL") == len(SEED) + 1
        )
    finally:
        await conn.close()


async def test_follow_the_graph_from_an_entity_to_its_memories(context, served, alpha, output_dir):
    page = await _sign_in(context, served, alpha.service_key)
    await page.goto(f"{served.url}/studio/entities?user_id=alice")
    node = page.locator("svg.graph a[data-kind=entity][aria-label='entity: Paris']")
    await node.focus()
    assert await page.locator("svg.graph line.hot").count() >= 1, "focus highlights the node's links"
    # Graph memory: alice's open relations (offline: the heuristic's co-mention edges), listed and drawn.
    conn = await _db(alpha)
    try:
        held = {
            str(r["id"]): (r["source"], r["relation"], r["target"])
            for r in await conn.fetch(
                """SELECT r.id, s.text AS source, r.relation, t.text AS target FROM mem.relations r
                   JOIN mem.entities s ON s.id = r.source_entity_id JOIN mem.entities t ON t.id = r.target_entity_id
                   WHERE r.user_id = 'alice' AND r.valid_to IS NULL AND r.invalidated_at IS NULL"""
            )
        }
    finally:
        await conn.close()
    assert held, "the seed names two entities in one memory"
    rows = await page.locator("#relations tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.id, ...[...r.cells].slice(0, 3).map(c => c.innerText.trim())])"
    )
    assert {row[0]: tuple(row[1:]) for row in rows} == held
    drawn = await page.locator("svg.graph line.relation").evaluate_all(
        "ls => ls.map(l => l.dataset.relation)"
    )
    assert drawn and set(drawn) <= {relation for _, relation, _ in held.values()}
    await _check_page(page, output_dir, "entities")
    entity_id = await node.get_attribute("data-id")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#linked")
    shown = set(await page.locator("#linked li").evaluate_all("ls => ls.map(l => l.dataset.id)"))
    conn = await _db(alpha)
    try:
        linked = {
            str(r["memory_id"])
            for r in await conn.fetch(
                """SELECT l.memory_id FROM mem.entity_links l JOIN mem.memories m ON m.id = l.memory_id
                   WHERE l.entity_id = $1::uuid AND m.deleted_at IS NULL""",
                entity_id,
            )
        }
    finally:
        await conn.close()
    assert shown == linked and len(linked) >= 1


# --- settings and reset -------------------------------------------------------------------------


async def test_change_a_setting_with_inline_validation(context, served, output_dir):
    tenant = _create_tenant(served, "Studio Settings")
    page = await _sign_in(context, served, tenant.service_key)
    await page.goto(f"{served.url}/studio/settings")
    await page.fill("#search-default-top-k", "500")
    await page.click("#settings-form button")
    assert "search.default-top-k" in await page.inner_text("#search-default-top-k-error")
    conn = await _db(tenant)
    try:
        assert await conn.fetchval("SELECT settings FROM mem.config") in ({}, "{}")
        await page.fill("#search-default-top-k", "7")
        await page.click("#settings-form button")
        await page.wait_for_selector("#saved")
        assert await page.inner_text("[data-effective='search.default-top-k']") == "7"
        await _check_page(page, output_dir, "settings")
        settings = await conn.fetchval("SELECT settings->>'search.default-top-k' FROM mem.config")
        assert settings == "7"
    finally:
        await conn.close()


async def test_reset_is_refused_on_a_wrong_name_and_done_on_the_right_one(context, served):
    tenant = _create_tenant(served, "Studio Reset Me")
    for text in ("Erin visited Rome", "Erin likes opera"):
        _add(served, tenant, text, user_id="erin")
    page = await _sign_in(context, served, tenant.service_key)
    await page.goto(f"{served.url}/studio/settings")
    await page.fill("#search-default-top-k", "9")
    await page.click("#settings-form button")
    await page.wait_for_selector("#saved")
    conn = await _db(tenant)
    counts = "SELECT (SELECT count(*) FROM mem.memories) + (SELECT count(*) FROM mem.memory_history) + (SELECT count(*) FROM mem.entities)"
    try:
        before = await conn.fetchval(counts)
        assert before > 0
        await page.fill("#confirm-name", "studio reset me")
        await page.click("#reset-form button")
        assert "does not match" in await page.inner_text("#reset-error")
        assert await conn.fetchval(counts) == before
        await page.fill("#confirm-name", "Studio Reset Me")
        await page.click("#reset-form button")
        await page.wait_for_selector("#reset-done")
        assert await conn.fetchval(counts) == 0
        assert await conn.fetchval("SELECT count(*) FROM mem.session_messages") == 0
        assert await conn.fetchval("SELECT settings->>'search.default-top-k' FROM mem.config") == "9"
    finally:
        await conn.close()


# --- the platform admin -------------------------------------------------------------------------


async def test_admin_creates_a_tenant_opens_one_and_runs_the_migration(context, served, alpha, output_dir):
    page = await _sign_in(context, served, served.admin_key)
    assert page.url.endswith("/studio/admin")
    assert await page.locator(f"#tenants tr[data-ref='{alpha.ref}']").count() == 1
    await page.fill("#tenant-name", "Studio Gamma")
    await page.click("form[action='/studio/admin/tenants'] button")
    await page.wait_for_selector("#created")
    ref = await page.inner_text("#created-ref")
    control = await asyncpg.connect(served.control_dsn)
    try:
        assert (
            await control.fetchval("SELECT name FROM control.tenants WHERE ref = $1", ref) == "Studio Gamma"
        )
    finally:
        await control.close()
    await page.click("#migrate-all")
    await page.wait_for_selector("#migrated")
    await _check_page(page, output_dir, "admin")
    rows = await page.locator("#migrated tbody tr").all_inner_texts()
    version = None
    conn = await _db(alpha)
    try:
        version = await conn.fetchval("SELECT max(version) FROM mem.schema_migrations")
    finally:
        await conn.close()
    mine = [r for r in rows if alpha.ref in r]
    assert len(mine) == 1 and f"\t{version}\t" in mine[0], rows
    # One tenant's migration answers for that tenant alone.
    await page.click(f"#tenants tr[data-ref='{alpha.ref}'] button:has-text('Migrate')")
    await page.wait_for_selector("#migrated")
    rows = await page.locator("#migrated tbody tr").all_inner_texts()
    assert len(rows) == 1 and alpha.ref in rows[0] and f"\t{version}\t" in rows[0], rows
    # The admin opens a tenant and sees its memories through the same services.
    await page.click(f"#tenants tr[data-ref='{alpha.ref}'] button:has-text('Open')")
    await page.wait_for_selector("#total-memories")
    assert await page.locator("#latency").count() == 1, "the admin sees the service's latencies"
    assert served.admin_key not in await page.content()


async def test_the_tenant_pages_fit_a_phone_and_the_keyboard(browser, served, alpha, output_dir):
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    try:
        page = await _sign_in(ctx, served, alpha.service_key)
        await page.goto(f"{served.url}/studio/memories?user_id=alice")
        await page.screenshot(path=str(output_dir / "memories-phone.png"), full_page=True)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        conn = await _db(alpha)
        try:
            alice = await conn.fetchval(
                "SELECT count(*) FROM mem.memories WHERE user_id = 'alice' AND deleted_at IS NULL"
            )
        finally:
            await conn.close()
        assert await page.inner_text("#listing-total") == f"{alice} memories · page 1 of 1"
    finally:
        await ctx.close()


async def test_the_api_docs_render_offline_and_link_to_studio(context, served):
    page = await context.new_page()
    await page.goto(f"{served.url}/docs")
    await page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Memory" in await page.inner_text(".swagger-ui .info .title")
    assert await page.get_attribute(".memory-nav a:has-text('Studio')", "href") == "/studio"
    assert await page.locator(".opblock").count() > 10
    # context's teardown asserts that no request left 127.0.0.1 (no CDN).


async def test_the_axe_check_can_fail(context):
    page = await context.new_page()
    await page.set_content("<html><body><input type='text'><img src='data:,'></body></html>")
    found = {v["id"] for v in await axe_violations(page)}
    assert {"label", "image-alt"} <= found
