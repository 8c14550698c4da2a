"""The ASGI app of ``vision-tasks serve`` (Starlette): routes, auth, CORS, limits, errors.

Routes (``/docs`` describes each; ``/openapi.json`` is the machine-readable form):

- ``POST /v1/models/{name}/predict``: one image as the body -> one ``predictions.jsonl``
  line; ``multipart/form-data`` with image files -> ``{"predictions": [line, ...]}`` in part
  order. Options in the query string or the form: ``score_threshold``, ``top_k``, ``heads``.
- ``GET /v1/models`` (and ``/v1/models/{name}``): task, classes, input size, heads.
- ``GET /healthz``: the process is alive; ``GET /readyz``: models loaded and not draining
  (both answered without a token, for probes).
- ``GET /metrics``: Prometheus text (:mod:`.metrics`).

Every error is ``{"error": "<one line>"}`` with a 4xx status for what the client sent, 503
(with ``Retry-After``) when the queue is full, a request waited too long, or the server is
shutting down, and 500 only for a fault of the server, which keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..runtime.pipeline import default_workers
from .host import ModelHost
from .inputs import RequestError, check_options, read_options, split_body
from .metrics import CONTENT_TYPE, Metrics
from .openapi import docs_page, openapi_spec
from .options import ServeOptions

log = logging.getLogger("vision_tasks.serve")
PROBES = ("/healthz", "/readyz")
JSON = "application/json"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": message}) + b"\n", status, headers, media_type=JSON)


class ServerState:
    """What the routes share: the settings, the models, the decoding pool, the counters, and
    whether the server is draining (SIGTERM: requests in flight finish, new ones get 503)."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self.hosts: dict[str, ModelHost] = {}
        self.decode_pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.draining = False

    def start(self) -> None:
        """Load every model (inside the running event loop)."""
        workers = self.options.workers or default_workers()
        self.decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        for name, path in self.options.models.items():
            self.hosts[name] = ModelHost(name, path, self.options, self.decode_pool, self.metrics)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for host in self.hosts.values():
            await host.close()
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=True)


class Guard:
    """Pure ASGI middleware in front of the routes: probes pass; while draining every other
    request gets 503; with a token, a request without ``Authorization: Bearer <token>``
    gets 401 (compared in constant time, :func:`hmac.compare_digest`)."""

    def __init__(self, app: ASGIApp, server: ServerState) -> None:
        self.app = app
        self.server = server
        token = server.options.token
        self.expected = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        refusal = None
        if self.server.draining:
            refusal = error_response(503, "the server is shutting down; retry on another "
                                          "instance", {"Retry-After": "5", "Connection": "close"})
            self.server.metrics.error("shutdown")
        elif self.expected is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                refusal = error_response(401, "missing or wrong bearer token; send the header "
                                              "'Authorization: Bearer <token of --token-file>'",
                                         {"WWW-Authenticate": 'Bearer realm="vision-tasks"'})
                self.server.metrics.error("unauthorized")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``timeout`` seconds.

    Raises:
        RequestError: 413 past the limit (told by Content-Length before reading, when
            given), 408 when the client is too slow, 400 for a malformed Content-Length.
    """
    declared = request.headers.get("content-length")
    too_large = RequestError(413, "body_too_large", f"the body is larger than {limit:,} bytes "
                             "(--max-body-mb); send a smaller image or fewer per request")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "bad_request", f"Content-Length '{declared}' is not a "
                                                   "number; let your HTTP client set it")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0

    async def pull() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)

    try:
        await asyncio.wait_for(pull(), timeout)
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
        raise RequestError(408, "read_timeout", f"the body did not arrive within {timeout:g} s "
                                                "(--read-timeout); send it at once") from None
    return b"".join(chunks)


async def predict(request: Request) -> Response:
    server: ServerState = request.app.state.server
    options = server.options
    name = request.path_params["name"]
    host = server.hosts.get(name)
    label = name if host is not None else ""  # unknown names do not become metric labels
    t0 = time.perf_counter()
    try:
        if host is None:
            raise RequestError(404, "unknown_model", f"no model named '{name}'; the models are "
                               f"{', '.join(server.hosts)} (GET /v1/models)")
        body = await read_body(request, options.max_body_bytes, options.read_timeout_s)
        uploads, fields, multipart = split_body(body, request.headers.get("content-type", ""),
                                                options.max_images)
        asked = check_options(read_options(dict(request.query_params), fields),
                              host.head_names, host.has_detections)
        try:
            answers = await asyncio.wait_for(host.predict(uploads, asked),
                                             options.request_timeout_s)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
            raise RequestError(503, "timeout", f"no answer within {options.request_timeout_s:g} s "
                               "(--request-timeout); the server is overloaded, retry later",
                               {"Retry-After": "5"}) from None
    except RequestError as err:
        server.metrics.error(err.kind)
        server.metrics.requests.labels(label, str(err.status)).inc()
        return error_response(err.status, str(err), err.headers)
    except ClientDisconnect:
        server.metrics.error("disconnected")
        return Response(status_code=400)  # nobody is left to read it
    except Exception as err:  # a fault of ours: logged in full, answered in one line
        log.exception("predict %s failed", name)
        server.metrics.error("internal")
        server.metrics.requests.labels(label, "500").inc()
        text = " ".join(str(err).split()) or type(err).__name__
        return error_response(500, f"internal error ({type(err).__name__}: {text}); the server "
                                   "logged it and keeps serving")
    server.metrics.requests.labels(name, "200").inc()
    server.metrics.images.labels(name).inc(len(answers))
    server.metrics.latency.labels(name).observe(time.perf_counter() - t0)
    content = (b'{"predictions":[' + b",".join(answers) + b"]}") if multipart else answers[0]
    return Response(content + b"\n", media_type=JSON)


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value) + b"\n", status, media_type=JSON)


async def healthz(request: Request) -> Response:
    return _json({"status": "alive"})


async def readyz(request: Request) -> Response:
    server: ServerState = request.app.state.server
    if server.draining:
        return _json({"status": "draining"}, 503)
    return _json({"status": "ready" if server.ready else "loading",
                  "models": list(server.hosts)}, 200 if server.ready else 503)


async def models(request: Request) -> Response:
    server: ServerState = request.app.state.server
    return _json({"models": [host.info() for host in server.hosts.values()]})


async def model(request: Request) -> Response:
    server: ServerState = request.app.state.server
    name = request.path_params["name"]
    if name not in server.hosts:
        server.metrics.error("unknown_model")
        return error_response(404, f"no model named '{name}'; the models are "
                                   f"{', '.join(server.hosts)} (GET /v1/models)")
    return _json(server.hosts[name].info())


async def metrics(request: Request) -> Response:
    return Response(request.app.state.server.metrics.text(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    return _json(openapi_spec(request.app.state.server.options))


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_page(openapi_spec(request.app.state.server.options)))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) as one-line JSON."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    request.app.state.server.metrics.error("not_found" if status == 404 else f"http_{status}")
    what = {404: f"no route {request.url.path}; see GET /docs",
            405: f"{request.method} is not allowed on {request.url.path}; see GET /docs"}
    return error_response(status, what.get(status, str(getattr(exc, "detail", exc))),
                          getattr(exc, "headers", None))


def build_app(options: ServeOptions) -> Starlette:
    """The server's ASGI app; its models load at startup (the ASGI lifespan)."""
    server = ServerState(options)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        server.start()
        try:
            yield
        finally:
            await server.stop()

    middleware = []
    if options.cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(options.cors),
                                     allow_methods=["GET", "POST"],
                                     allow_headers=["Authorization", "Content-Type"],
                                     max_age=600))
    middleware.append(Middleware(Guard, server=server))
    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
              Route("/v1/models", models), Route("/v1/models/{name}", model),
              Route("/v1/models/{name}/predict", predict, methods=["POST"]),
              Route("/openapi.json", openapi), Route("/docs", docs)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.server = server
    return app
