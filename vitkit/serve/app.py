"""The HTTP side of ``vitkit serve``: a FastAPI app with the page, the JSON API and the safety limits.

Endpoints: ``GET /`` (the page, from ``static/``), ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz``,
``GET /docs`` (Swagger UI, its files served locally: ``docs.py``; no ``/redoc``) and ``/openapi.json``.
Every error is ``{"error": "<one line>"}`` with its status:

- 400: a file the decoder rejects (the reason ``vitkit predict`` gives), a malformed request;
- 401: ``--token`` is set and the request lacks ``Authorization: Bearer <token>``;
- 413: a body over ``--max-upload-mb`` (refused while it streams in), an image over ``--max-pixels``;
- 415: neither an image nor a video (or not the kind this model takes);
- 503 + ``Retry-After``: ``--max-queue`` requests are already in progress (the queue never grows past it);
- 504: a request that took longer than ``--timeout``.

Nothing reads or writes a server file by a client-given name: uploads stay in memory, and the page's files
are served from the package's own ``static/`` folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .batcher import Batcher
from .docs import add_docs
from .engine import Engine, InputError

STATIC = Path(__file__).with_name("static")
PAGE_HEADERS = {
    # The page loads nothing from elsewhere; images are data: URLs (answers) and blob: URLs (local previews).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MULTIPART_FILE_HELP = "send files as multipart form fields (e.g. curl -F file=@cat.jpg) or one file as the raw body"


@dataclass(frozen=True)
class Limits:
    """What one request may send and how long it may take (``GET /v1/model`` reports them)."""

    max_upload_mb: float = 10.0
    max_pixels: int = 40_000_000
    max_files: int = 16
    """Files per request."""
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Settings:
    """The ``vitkit serve`` options, in the order a request meets them: the token, the request limits, the queue,
    the decode threads, the batching, the answer."""

    token: str | None = None
    """Required as ``Authorization: Bearer <token>`` when set."""
    limits: Limits = field(default_factory=Limits)
    max_queue: int = 64
    """Requests in progress (decoding, waiting, running) beyond which new ones get 503."""
    workers: int = 4
    """Decode threads."""
    max_batch: int = 32
    max_wait_ms: float = 5.0
    default_top_k: int = 5


class _Reply(Exception):
    """An error answer: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def create_app(engine: Engine, settings: Settings = Settings()) -> FastAPI:
    """The app serving ``engine``; it starts a model thread and ``settings.workers`` decode threads, stopped when
    the app shuts down."""
    batcher: Batcher = Batcher(engine.process, max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000)
    pool = ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="vitkit-decode")
    active = {"requests": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        batcher.close()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="vitkit serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Classify images or videos with {engine.name}. Errors are {{\"error\": \"...\"}}.")
    add_docs(app)  # /docs without a CDN
    app.state.batcher, app.state.engine, app.state.settings = batcher, engine, settings
    limits = settings.limits

    @app.exception_handler(_Reply)
    async def _reply(_request: Request, error: _Reply) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(error).__name__}); a bug in vitkit serve"},
                            status_code=500)

    def authorise(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            raise _Reply(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                         {"WWW-Authenticate": "Bearer"})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="Liveness: 200 while the server runs")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "in_progress": active["requests"], "batches": batcher.batches}

    @app.get("/v1/model", summary="The model: name, task, classes, input size, preprocessing")
    async def model(request: Request) -> dict[str, Any]:
        authorise(request)
        return {**engine.describe(), "token_required": settings.token is not None,
                "limits": asdict(settings.limits)}

    @app.post("/v1/predict", summary="Top-k classes (and the attention rollout) of uploaded images or videos",
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def predict(request: Request, top_k: int = Query(settings.default_top_k, ge=1, le=1000),
                      explain: bool = Query(False, description="add the crop and the rollout overlay as PNGs")
                      ) -> dict[str, Any]:
        authorise(request)
        if active["requests"] >= settings.max_queue:
            raise _Reply(503, f"busy: {active['requests']} requests in progress (--max-queue); retry shortly",
                         {"Retry-After": "1"})
        active["requests"] += 1
        try:
            results = await asyncio.wait_for(_answer(request, top_k, explain), limits.timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise _Reply(504, f"timed out after {limits.timeout_s:g} s (--timeout)") from None
        finally:
            active["requests"] -= 1
        return {"model": engine.name, "results": results}

    async def _answer(request: Request, top_k: int, explain: bool) -> list[dict[str, Any]]:
        uploads = await _uploads(request, limits)
        answers = await asyncio.gather(*(_one(data, name, kind, top_k, explain) for name, kind, data in uploads),
                                       return_exceptions=True)
        for (name, _, _), answer in zip(uploads, answers):
            if isinstance(answer, InputError):
                raise _Reply(answer.status, f"{name}: {answer}")
            if isinstance(answer, BaseException):
                raise answer
        return list(answers)

    async def _one(data: bytes, name: str, content_type: str | None, top_k: int, explain: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        with batcher.expecting():  # the model thread may wait a little for this one
            prepared = await loop.run_in_executor(pool, engine.prepare, data, name, content_type, explain,
                                                  limits.max_pixels)
        output = await asyncio.wrap_future(batcher.submit(prepared, len(prepared.inputs)))
        return await loop.run_in_executor(pool, engine.answer, prepared, output, top_k)

    return app


async def _uploads(request: Request, limits: Limits) -> list[tuple[str, str | None, bytes]]:
    """(name, content type, bytes) of each uploaded file: multipart file fields, or the raw body as one file."""
    body = await _body(request, int(limits.max_upload_mb * 1024 * 1024))
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        if not body:
            raise _Reply(400, f"empty request: {MULTIPART_FILE_HELP}")
        return [("body", content_type or None, body)]

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=limits.max_files, max_fields=limits.max_files)
    except HTTPException as error:
        raise _Reply(400, f"malformed multipart body ({error.detail})") from None
    except Exception as error:  # noqa: BLE001 - the parser's complaints about fuzzed bodies are client errors
        raise _Reply(400, f"malformed multipart body ({type(error).__name__}); {MULTIPART_FILE_HELP}") from None
    try:
        files = [((f.filename or key)[:200], f.content_type, await f.read())
                 for key, f in form.multi_items() if isinstance(f, UploadFile)]
    finally:
        await form.close()
    if not files:
        raise _Reply(400, f"no file in the multipart body: {MULTIPART_FILE_HELP}")
    return files


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = _Reply(413, f"request too large: over this server's limit of {limit / 2**20:g} MB (--max-upload-mb)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)
