"""/docs without a CDN: Swagger UI's files come from the installed `fastapi-offline` package (swagger-ui-dist,
Apache-2.0), served by this app, so the page works on a machine with no internet."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

ASSETS = "/docs/assets"
_NO_ASSETS = """<!doctype html><html><head><meta charset="utf-8"><title>effnet serve - API</title></head><body>
<h1>effnet serve</h1><p>Swagger UI's files are not installed here: <code>pip install fastapi-offline</code>
(part of <code>effnet[serve]</code>). The API description is at <a href="{root}/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


def swagger_assets() -> Path | None:
    """The folder holding swagger-ui-bundle.js and swagger-ui.css, or None when fastapi-offline is missing."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() and (folder / "swagger-ui.css").is_file() else None


def add_docs(app: FastAPI) -> None:
    """GET /docs: Swagger UI on the app's own /openapi.json, its scripts and styles from this server."""
    folder = swagger_assets()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="swagger-ui")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if folder is None:
            return HTMLResponse(_NO_ASSETS.format(root=root))
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # No validator badge: Swagger UI would send the schema to validator.swagger.io for it.
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True},
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)


def install_openapi(app: FastAPI, body_models: list[type[BaseModel]], bearer: bool) -> None:
    """Make /openapi.json include `body_models` (request bodies that handlers parse themselves, referenced from
    their routes' openapi_extra) and, with a token, the bearer scheme Swagger UI's Authorize button uses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in body_models:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            if bearer:
                schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                schema["security"] = [{"bearer": []}]
            app.openapi_schema = jsonable_encoder(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
