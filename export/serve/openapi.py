"""The API described: an OpenAPI 3.1 document (``GET /openapi.json``) and a page that reads
it (``GET /docs``), self-contained (no script or style fetched from elsewhere, so it works
on a machine without internet and leaks no request to a third party)."""

from __future__ import annotations

import html
from typing import Any

from vision_tasks import __version__

from .inputs import MAX_TOP_K
from .options import ServeOptions

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def openapi_spec(options: ServeOptions) -> dict[str, Any]:
    """The OpenAPI document of a server with these settings (its models, its limits)."""
    names = {"type": "string", "enum": list(options.models)}
    image = {"type": "string", "format": "binary"}
    predict = {
        "summary": "Predict one image (the body) or several (multipart files)",
        "description": (
            "The body is one encoded image (JPEG, PNG, WebP, BMP, TIFF, GIF), answered with one "
            "object, the same JSON as a line of `vision-tasks predict`'s predictions.jsonl "
            "(masks as compressed COCO RLE); or multipart/form-data whose file parts are images "
            f"(at most {options.max_images}), answered with {{\"predictions\": [...]}} in part "
            "order. Options come in the query string, as form fields, or as a form field "
            f"`options` holding a JSON object. Limits: a body of at most {options.max_body_mb:g} "
            f"MiB, images of at most {options.max_pixels:,} pixels."),
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": names},
            _query("score_threshold", {"type": "number", "minimum": 0, "maximum": 1},
                   "detect/segment: leave out detections scoring below this (default 0.25)"),
            _query("top_k", {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                   "classify/localize: classes listed in `top` (default 5)"),
            _query("heads", {"type": "string"},
                   "a multi-head model: comma-separated heads to answer with (default all)"),
        ],
        "requestBody": {"required": True, "content": {
            "image/*": {"schema": image},
            "application/octet-stream": {"schema": image},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "images": {"type": "array", "items": image},
                "options": {"type": "string", "description": "a JSON object of options"}}}}}},
        "responses": {
            "200": {"description": "the prediction(s)", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Prediction"}}}},
            "400": _error("a broken image, a malformed body or a wrong option"),
            "401": _error("missing or wrong bearer token (servers run with --token-file)"),
            "404": _error("no such model"),
            "408": _error("the body did not arrive in time"),
            "413": _error("the body, the number of images or an image's pixels over the limit"),
            "415": _error("not an image"),
            "503": _error("queue full, no answer in time, or shutting down (see Retry-After)"),
        },
    }
    plain = {"200": {"description": "OK", "content": {"application/json": {}}}}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "vision-tasks model server", "version": __version__,
                 "description": "Classify, localize, detect and segment with vision-tasks "
                                "ONNX models; dynamic batching, bounded queue."},
        "paths": {
            "/v1/models/{name}/predict": {"post": predict},
            "/v1/models": {"get": {"summary": "Every model: task, classes, input size, heads",
                                   "responses": plain}},
            "/v1/models/{name}": {"get": {
                "summary": "One model's metadata", "responses": {**plain, "404": _error("no such model")},
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": names}]}},
            "/healthz": {"get": {"summary": "Alive (no token needed)", "responses": plain,
                                 "security": []}},
            "/readyz": {"get": {"summary": "Models loaded and not shutting down (no token "
                                           "needed)", "security": [],
                                "responses": {**plain, "503": _error("loading or draining")}}},
            "/metrics": {"get": {"summary": "Prometheus text: requests, errors by kind, queue "
                                            "depth, batch sizes, latency",
                                 "responses": {"200": {"description": "OK"}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "Prediction": {"type": "object", "description": "a predictions.jsonl line",
                           "properties": {"source": {"type": "string"}, "task": {"type": "string"},
                                          "width": {"type": "integer"},
                                          "height": {"type": "integer"},
                                          "top": {"type": "array"},
                                          "detections": {"type": "array"}}}}},
    }
    if options.token is not None:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec


def docs_page(spec: dict[str, Any]) -> str:
    """An HTML page listing every route of ``spec`` with its parameters and answers."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = "".join(f"<li><code>{html.escape(p['name'])}</code> ({p['in']}): "
                             f"{html.escape(p.get('description', ''))}</li>"
                             for p in op.get("parameters", []))
            answers = "".join(f"<li><b>{code}</b> {html.escape(r['description'])}</li>"
                              for code, r in op.get("responses", {}).items())
            rows.append(f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                        f"<p>{html.escape(op.get('summary', ''))}</p>"
                        f"<p>{html.escape(op.get('description', ''))}</p>"
                        f"<ul>{params}</ul><ul>{answers}</ul></section>")
    info = spec["info"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(info['title'])}"
            "</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "code{background:#eee}</style></head><body>"
            f"<h1>{html.escape(info['title'])} {html.escape(info['version'])}</h1>"
            f"<p>{html.escape(info['description'])} Machine-readable: "
            "<a href='/openapi.json'>/openapi.json</a>.</p>" + "".join(rows) + "</body></html>")
