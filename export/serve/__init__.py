"""``vision-tasks serve``: the torch-free runtime behind an HTTP API (the ``serve`` extra).

The stack is Starlette on uvicorn: Starlette is the small ASGI toolkit FastAPI itself is
built on, and this API takes raw image bytes and answers JSON it writes itself (orjson), so
FastAPI's request models would add pydantic and a validation pass per request and give
nothing; Starlette still gives routing, CORS and the ASGI lifespan, and its app runs unchanged
inside Ray Serve (:mod:`.ray_serve`). uvicorn is the reference ASGI server (uvloop and
httptools when installed). Multipart bodies are read by python-multipart's parser in memory,
and ``/metrics`` is written by prometheus-client.

- :mod:`.options`: the settings (:class:`ServeOptions`);
- :mod:`.inputs`: a request's images and options, checked;
- :mod:`.batcher`: dynamic batching with a bounded queue;
- :mod:`.host`: one model (a :class:`~vision_tasks.export.runtime.Predictor`) and its batcher;
- :mod:`.app`: the Starlette app (routes, auth, CORS, errors);
- :mod:`.metrics`, :mod:`.openapi`: ``/metrics``, ``/openapi.json`` and ``/docs``;
- :mod:`.commands`: the ``serve`` verb (uvicorn, graceful SIGTERM); :mod:`.ray_serve`: the
  same app as a Ray Serve deployment.

Nothing here imports torch.
"""

from .options import ServeOptions

__all__ = ["ServeOptions"]
