"""``vitkit serve``: a local web page and an HTTP JSON API for a trained model, with dynamic batching.

Needs the optional extra ``pip install vitkit[serve]`` (FastAPI, uvicorn, python-multipart,
fastapi-offline); the rest of vitkit never imports this package. The parts, in the order a request meets them:

- ``app.py``: the FastAPI app (page, ``/v1/predict``, ``/v1/model``, ``/healthz``), request limits and errors;
- ``engine.py``: the model, and bytes -> model inputs -> JSON answers, exactly as ``vitkit predict``;
- ``batcher.py``: the one thread that runs the model, on batches gathered from concurrent requests;
- ``docs.py``: ``/docs`` (Swagger UI) with its files served locally (no CDN);
- ``static/``: the page (plain HTML, CSS and JavaScript, served by the app itself).

    >>> from vitkit.serve import Engine, Settings, create_app
    >>> app = create_app(Engine("runs/cats"), Settings(max_batch=16))  # any ASGI server can run it
"""

from .app import Limits, Settings, create_app
from .batcher import Batcher
from .engine import Engine, InputError

__all__ = ["Batcher", "Engine", "InputError", "Limits", "Settings", "create_app"]
