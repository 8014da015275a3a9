"""``vitkit serve``: a web page and an HTTP JSON API for a trained model (see docs/serve.md)."""

from __future__ import annotations

import argparse
import os
import sys

from .args import positive_int

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def cmd_serve(args: argparse.Namespace) -> int:
    from ..errors import VitkitError
    from .train import _views

    try:
        import uvicorn

        from ..serve import Engine, Limits, Settings, create_app
    except ImportError as error:
        raise VitkitError(f"vitkit serve needs FastAPI, uvicorn, python-multipart and fastapi-offline ({error.name} is "
                          "missing): run `pip install vitkit[serve]`") from None
    token = args.token or os.environ.get("VITKIT_SERVE_TOKEN") or None
    if args.host not in LOOPBACK and token is None:
        print(f"warning: serving on {args.host} without --token: anyone who can reach this port can use the "
              "model", file=sys.stderr)
    engine = Engine(args.source, int8=args.int8, views=_views(args.views), device=args.device)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, timeout_s=args.timeout)
    settings = Settings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, workers=args.workers,
                        max_queue=args.max_queue, token=token, default_top_k=args.top_k, limits=limits)
    app = create_app(engine, settings)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {engine.name} ({engine.kind}s, {len(engine.class_names)} classes) on http://{host}:{args.port}"
          f"  (API docs: /docs; stop with Ctrl+C)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "info")
    return 0


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def register(add) -> None:
    from ..inference.device import DEVICE_HELP

    serve = add("serve", cmd_serve, "serve a model: a web page and an HTTP JSON API, with dynamic batching",
                ["vitkit serve runs/pets                     # http://127.0.0.1:8000",
                 "vitkit serve runs/pets --int8 --max-batch 16",
                 "vitkit serve runs/pets --host 0.0.0.0 --token SECRET --device cuda"])
    serve.add_argument("source", metavar="RUN_OR_SOURCE",
                       help="run folder (or any vitkit model folder), or anything `vitkit.load` reads")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    serve.add_argument("--max-batch", type=positive_int, default=32, help="most inputs per model call")
    serve.add_argument("--max-wait-ms", type=_non_negative, default=5.0,
                       help="longest a batch waits for requests still being decoded")
    serve.add_argument("--device", default="auto", help=DEVICE_HELP)
    serve.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    serve.add_argument("--workers", type=positive_int, default=min(4, os.cpu_count() or 1),
                       help="decode threads (default: up to 4)")
    serve.add_argument("--max-upload-mb", type=_positive, default=10.0, help="largest request body (413 above)")
    serve.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                       help="largest image (or video frame) in pixels (413 above): a decompression-bomb guard")
    serve.add_argument("--timeout", type=_positive, default=30.0, help="seconds a request may take (504 after)")
    serve.add_argument("--max-queue", type=positive_int, default=64,
                       help="requests in progress beyond which new ones get 503 + Retry-After")
    serve.add_argument("--token", default=None,
                       help="require 'Authorization: Bearer TOKEN' on /v1/* (or set VITKIT_SERVE_TOKEN)")
    serve.add_argument("--top-k", type=positive_int, default=5, help="classes per answer unless ?top_k= says")
    serve.add_argument("--views", default="2x3", help="video models: CLIPSxCROPS views per video, averaged")
    serve.add_argument("--log-level", choices=["warning", "info", "debug"], default="warning",
                       help="uvicorn's log level; info also logs every request")
