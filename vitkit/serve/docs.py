"""The API documentation page of ``vitkit serve``, served offline: ``/docs`` (Swagger UI).

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and a favicon from FastAPI's site), so they are blank
on a machine without internet. Here Swagger UI's JavaScript, CSS and favicon come from the ``fastapi-offline``
package (part of the ``[serve]`` extra; its Swagger UI 5 renders the OpenAPI 3.1 that FastAPI writes), mounted at
:data:`ASSETS` and served by vitkit itself, so the page asks no other host for anything. There is no ``/redoc``:
ReDoc's bundle always fetches its logo from its vendor's CDN.
"""

from __future__ import annotations

from importlib.resources import files

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
"""Where the documentation page's own files are served."""


def asset_folder() -> str:
    """The folder of Swagger UI's files shipped by ``fastapi-offline``."""
    folder = files(fastapi_offline) / "static"
    if not folder.joinpath("swagger-ui-bundle.js").is_file():
        raise FileNotFoundError(f"{folder}: no swagger-ui-bundle.js in fastapi-offline's files; reinstall it with "
                                "`pip install --force-reinstall fastapi-offline`")
    return str(folder)


def add_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """Serve Swagger UI for ``app``'s OpenAPI schema at ``docs_url`` from local files; ``app`` must be built with
    ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not registered."""
    app.mount(ASSETS, StaticFiles(directory=asset_folder()), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=str(app.openapi_url), title=f"{app.title} - API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url)

    @app.get(str(app.swagger_ui_oauth2_redirect_url), include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
