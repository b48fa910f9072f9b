"""The emulator server: one aiohttp app serving HTTP and WebSocket APIs on one loopback port.

`Emulator` runs inside an existing event loop (async tests, the daemon's own tooling);
`EmulatorThread` runs one in a background thread with its own loop (sync SDK tests, `demo`);
`run()` is the `voice-agent emulator` command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from aiohttp import web

from agent.emulator.context import DEFAULT_API_KEY, EmulatorContext, EmulatorOptions
from agent.emulator.errors import (
    REQUEST_ID_KEY,
    ApiError,
    error_response,
    for_status,
)
from agent.emulator.faults import FaultPlan, FaultSpecError
from agent.emulator.routes import add_routes

log = logging.getLogger("agent.emulator")


@web.middleware
async def _envelope_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request ids everywhere; routing errors and crashes answered as JSON, never a traceback."""
    request[REQUEST_ID_KEY] = EmulatorContext.new_request_id()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = (exc.text or "").strip()
        message = text if text and not text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            message = f"No API at {request.method} {request.path}."
        return error_response(request, for_status(exc.status, message))
    except ApiError as err:
        return error_response(request, err)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(request, for_status(500))
    if not response.prepared and "x-request-id" not in response.headers:
        response.headers["x-request-id"] = request[REQUEST_ID_KEY]
    return response


def build_app(ctx: EmulatorContext) -> web.Application:
    app = web.Application(middlewares=[_envelope_middleware], client_max_size=128 * 1024 * 1024)
    add_routes(app, ctx)
    try:  # optional request log (GET /_emulator/requests), when that module is present
        from agent.emulator import requestlog
    except ImportError:
        return app
    requestlog.attach(app, ctx)
    requestlog.add_route(app, ctx)
    return app


class Emulator:
    """A DashScope emulator in the current event loop."""

    def __init__(
        self, *, options: EmulatorOptions | None = None, faults: str | None = None
    ) -> None:
        self._ctx = EmulatorContext(options, FaultPlan(faults))
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    @property
    def context(self) -> EmulatorContext:
        return self._ctx

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT` (set by start())."""
        return self._base_url

    @property
    def ws_url(self) -> str:
        """`ws://HOST:PORT` (set by start())."""
        return "ws" + self._base_url[len("http") :] if self._base_url else ""

    @property
    def api_key(self) -> str:
        return self._ctx.options.api_key

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        runner = web.AppRunner(
            build_app(self._ctx),
            access_log=logging.getLogger("agent.emulator.access"),
            access_log_format='%a "%r" %s %b %Tfs',
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        sockname = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        bound_host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        self._base_url = f"http://{bound_host}:{sockname[1]}"
        self._ctx.base_url = self._base_url
        log.info("emulator listening on %s", self._base_url)
        return self._base_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class EmulatorThread:
    """An Emulator on its own event loop in a daemon thread; a context manager.

    For synchronous callers (the official SDK is sync, `demo` drives a subprocess daemon).
    """

    def __init__(
        self,
        *,
        options: EmulatorOptions | None = None,
        faults: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulator = Emulator(options=options, faults=faults)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def ws_url(self) -> str:
        return self.emulator.ws_url

    @property
    def context(self) -> EmulatorContext:
        return self.emulator.context

    @property
    def api_key(self) -> str:
        return self.emulator.api_key

    def start(self, timeout: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._main, name="dashscope-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("emulator thread did not start in time")
        if self._error is not None:
            raise RuntimeError(f"emulator failed to start: {self._error}") from self._error
        return self.base_url

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.emulator.start(self._host, self._port))
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.emulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the emulator's loop from another thread."""
        if self._loop is None:
            raise RuntimeError("emulator thread not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def resolve_api_key(api_key: str | None) -> str:
    """`--api-key`, else `$DASHSCOPE_API_KEY`, else `sk-emulator` (SPEC §8)."""
    return api_key or os.environ.get("DASHSCOPE_API_KEY") or DEFAULT_API_KEY


def run(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: str | None = None,
    options: EmulatorOptions | None = None,
) -> int:
    """`voice-agent emulator`: print the base URL first (flushed), serve until SIGTERM/SIGINT."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    opts = options or EmulatorOptions()
    opts.api_key = resolve_api_key(api_key)
    try:
        FaultPlan(faults)
    except FaultSpecError as e:
        print(f"voice-agent emulator: bad --faults: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(host, port, opts, faults))


async def _serve(host: str, port: int, opts: EmulatorOptions, faults: str | None) -> int:
    emulator = Emulator(options=opts, faults=faults)
    try:
        url = await emulator.start(host, port)
    except OSError as e:
        print(f"voice-agent emulator: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 1
    print(url, flush=True)
    print(
        json.dumps({"http": url, "ws": emulator.ws_url, "faults": faults or "",
                    "region": opts.region or "any"}),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await emulator.stop()
    return 0
