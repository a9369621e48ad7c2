"""`serve`: bind the port, start the runtime, and print the banner only once requests are answered.

Start-up runs in a fixed order so that every failure is one line naming what to set or
free: the port first (a second `make run` fails before it touches the database), then the
provider settings (a missing API key fails before the database starts), then the database
and the model. uvicorn gets an already-started runtime, so its lifespan cannot fail and
the banner waits until uvicorn's start-up has made the socket listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Generator

import asyncpg
import uvicorn
import uvloop

from app.asgi import build_runtime, close_runtime, create_app
from app.cli.banner import DEMO_REF, demo_info, deployment_banner, render_banner, render_plain_banner
from app.cli.errors import CliError
from app.errors import AppError
from app.providers.chat import build_chat_provider
from app.providers.embeddings import LocalEmbedder, build_embedder
from app.runtime import Runtime
from app.settings import Settings, SettingsError


class _Server(uvicorn.Server):
    """uvicorn's server, with an event for "the socket listens" and signals that only ask it to exit."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # set by uvicorn once every socket is listening
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        # uvicorn re-raises a captured SIGINT once it has shut down, so that its caller sees a
        # KeyboardInterrupt. Here the runtime still has to close after the server, and Ctrl-C
        # is the normal way to stop: the signals only ask the server to exit.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def check_providers(settings: Settings) -> None:
    """Build and drop the providers, so a missing key or URL fails before the database starts."""
    try:
        chat = build_chat_provider(settings.mem)
        embedder = build_embedder(settings.mem, tenant_queue=settings.limits.embedding_queue)
    except (SettingsError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if chat is not None:
        await chat.close()
    await embedder.close()


async def start_runtime(settings: Settings) -> Runtime:
    where = "DATABASE_URL" if settings.database_url else f"the embedded PostgreSQL in {settings.data_dir}"
    try:
        runtime = await build_runtime(settings)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    except AppError as exc:
        raise CliError(f"{exc.message} {exc.hint or ''}".strip()) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CliError(f"cannot use the database ({where}): {exc}") from None
    if isinstance(runtime.embedder, LocalEmbedder):
        await runtime.embedder.warm_up()
    return runtime


def wants_demo(settings: Settings) -> bool:
    """The demo tenant: always on the embedded development default, with DATABASE_URL only when
    MEM_CREATE_DEMO=1 asks for it (a deployment gets no tenant nobody created)."""
    return settings.create_demo if settings.create_demo is not None else not settings.database_url


async def demo_keys(runtime: Runtime) -> dict[str, str]:
    platform = runtime.platform
    tenant = await platform.find_tenant(DEMO_REF) or await platform.create_tenant("Demo", ref=DEMO_REF)
    return platform.key_set(tenant)


async def banner_text(settings: Settings, runtime: Runtime) -> str:
    if not wants_demo(settings):
        return render_plain_banner(settings.api_url)
    info = demo_info(settings.api_url, await demo_keys(runtime), settings.admin_key)
    return render_banner(deployment_banner(info) if settings.database_url else info)


async def serve(settings: Settings, sock: socket.socket) -> None:
    await check_providers(settings)
    runtime = await start_runtime(settings)
    try:
        banner = await banner_text(settings, runtime)
        config = uvicorn.Config(
            create_app(settings, runtime=runtime),
            log_config=None,
            access_log=False,
            lifespan="on",
            # httptools' C parser, not h11's pure-Python one (issue 13: a search spent more in h11).
            http="httptools",
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        listening = asyncio.create_task(server.listening.wait())
        await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
        if server.listening.is_set():
            print(banner, flush=True)
        else:
            listening.cancel()
        await serving
    finally:
        await close_runtime(runtime)


def run_server(settings: Settings, sock: socket.socket) -> int:
    try:
        # uvloop: the event loop in C (libuv); asyncpg and httptools were written for it.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, sock))
    except KeyboardInterrupt:  # Ctrl-C before the server was up: nothing to report
        return 130
    finally:
        sock.close()
    return 0
