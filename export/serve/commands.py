"""The ``serve`` verb, added to ``vision-tasks`` through the ``vision_tasks.commands``
entry-point group (pyproject.toml). Registering it imports nothing heavy; the server stack
(the ``serve`` extra) is imported when the verb runs."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
from typing import Any

from vision_tasks.errors import VisionTasksError

from .options import ServeOptions, parse_models, read_token

DEFAULT_MAX_CONNECTIONS = 1000


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0 to 65535, got {value}")
    return value


def add_serve(verbs: Any) -> None:
    p = verbs.add_parser("serve", help="serve models over HTTP: dynamic batching, bounded "
                                       "queue, metrics (the serve extra; no torch needed)")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model.onnx files (or NAME=model.onnx); each is served at "
                        "/v1/models/NAME/predict, NAME the file stem by default")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                        "0.0.0.0 opens it to the network: add --token-file)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--device", default="auto",
                   help="auto (TensorRT > CUDA > CPU) | cpu | cuda (default auto)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="onnxruntime CPU threads per model (default: the usable cores)")
    p.add_argument("--lanes", type=_positive, default=None,
                   help="batches run at once per model, each on threads/lanes threads "
                        "(default: min(threads, 2)), as in predict")
    p.add_argument("--workers", type=_positive, default=None,
                   help="image-decoding threads shared by the models (default: cores, 2..8)")
    p.add_argument("--max-batch", type=_positive, default=8,
                   help="the most images one inference call takes (default 8; 1: no batching)")
    p.add_argument("--max-delay-ms", type=float, default=5.0,
                   help="how long a batch's first image waits for others (default 5 ms)")
    p.add_argument("--max-queue", type=_positive, default=64,
                   help="images waiting per model before new requests get 503 (default 64)")
    p.add_argument("--max-body-mb", type=float, default=20.0,
                   help="the largest request body in MiB (default 20; larger: 413)")
    p.add_argument("--max-images", type=_positive, default=16,
                   help="images in one multipart request (default 16)")
    p.add_argument("--max-pixels", type=_positive, default=40_000_000,
                   help="the largest image decoded, width x height (default 40,000,000: 413 past "
                        "it, so a small file of a huge image cannot fill the memory)")
    p.add_argument("--read-timeout", type=float, default=30.0,
                   help="seconds a client may take to send its body (default 30; then 408)")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds a request may wait and run once read (default 60; then 503)")
    p.add_argument("--max-connections", type=_positive, default=DEFAULT_MAX_CONNECTIONS,
                   help=f"open connections at once; past it uvicorn answers 503 (default "
                        f"{DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--token-file", default=None,
                   help="a file holding a secret: every request but /healthz and /readyz must "
                        "send 'Authorization: Bearer <secret>' (else 401)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages of ORIGIN (e.g. https://app.example.com) to call "
                        "the API (repeatable; default: CORS off)")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds the requests in flight get to finish (default 30)")
    p.add_argument("--reduced-decode", action="store_true",
                   help="decode JPEGs far larger than the model input at 1/2 to 1/8 scale, as "
                        "predict --reduced-decode")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                   default="warning", help="uvicorn's log level (default warning; info logs "
                                           "every request)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (uvicorn); ray: a Ray Serve deployment of the same "
                        "app (the ray extra; README: Serving)")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster to join (default: a local Ray for this run)")
    p.add_argument("--replicas", type=_positive, default=None,
                   help="--engine ray: fixed number of replicas (default 1)")
    p.add_argument("--min-replicas", type=int, default=None,
                   help="--engine ray: autoscaling lower bound (with --max-replicas)")
    p.add_argument("--max-replicas", type=_positive, default=None,
                   help="--engine ray: autoscaling upper bound; turns autoscaling on")
    p.add_argument("--target-ongoing-requests", type=float, default=None,
                   help="--engine ray: autoscaling target of requests per replica (default 8)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0,
                   help="--engine ray: GPUs each replica holds (default 0)")
    p.set_defaults(func=cmd_serve)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The :class:`ServeOptions` of the command line (models checked, token read)."""
    token = read_token(args.token_file) if args.token_file else None
    return ServeOptions(models=parse_models(args.models), host=args.host, port=args.port,
                        device=args.device, threads=args.threads, lanes=args.lanes,
                        workers=args.workers, max_batch=args.max_batch,
                        max_delay_ms=args.max_delay_ms, max_queue=args.max_queue,
                        max_body_mb=args.max_body_mb, max_images=args.max_images,
                        max_pixels=args.max_pixels, read_timeout_s=args.read_timeout,
                        request_timeout_s=args.request_timeout, token=token,
                        cors=tuple(args.cors), graceful_timeout_s=args.graceful_timeout,
                        reduced_decode=args.reduced_decode)


def _warn_if_open(options: ServeOptions) -> None:
    try:
        loopback = ipaddress.ip_address(options.host).is_loopback
    except ValueError:
        loopback = options.host == "localhost"
    if not loopback and options.token is None:
        print(f"serve: warning: listening on {options.host} without --token-file: anyone who "
              "can reach this port can use the models", file=sys.stderr)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket (bound here, so a busy port is one clear error)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        raise VisionTasksError(f"--host {host} --port {port}: cannot listen there "
                               f"({err.strerror or err}); pass another --port or --host") from None
    return sock


SERVE_EXTRA = ("starlette", "uvicorn", "python_multipart", "prometheus_client")


def _check_extra() -> None:
    """One line, not a traceback, when the serve extra is not installed."""
    import importlib.util

    missing = [name for name in SERVE_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise VisionTasksError(f"vision-tasks serve needs the serve extra ({missing[0]} is not "
                               "installed): pip install 'vision-tasks[serve]'")


def _check_models(options: ServeOptions) -> None:
    """Each file read as the runtime reads it, so a bad file is one line here rather than a
    traceback from the server's startup."""
    from ..runtime.predictor import read_metadata
    from ..runtime.providers import load_for_inspection

    for path in options.models.values():
        read_metadata(load_for_inspection(path), path)


def cmd_serve(args: argparse.Namespace) -> int:
    _check_extra()
    options = serve_options(args)
    _check_models(options)
    _warn_if_open(options)
    if args.engine == "ray":
        from .ray_serve import RayServeOptions, run_ray

        return run_ray(options, RayServeOptions(
            address=args.address, replicas=args.replicas, min_replicas=args.min_replicas,
            max_replicas=args.max_replicas, target_ongoing_requests=args.target_ongoing_requests,
            gpus_per_replica=args.gpus_per_replica))
    ray_only = [flag for flag, value in (("--address", args.address), ("--replicas", args.replicas),
                                         ("--max-replicas", args.max_replicas),
                                         ("--gpus-per-replica", args.gpus_per_replica)) if value]
    if ray_only:
        raise VisionTasksError(f"{ray_only[0]} is an option of --engine ray; add --engine ray")
    return run_local(options, args.max_connections, args.log_level)


def run_local(options: ServeOptions, max_connections: int = DEFAULT_MAX_CONNECTIONS,
              log_level: str = "warning") -> int:
    """Serve on uvicorn until SIGTERM or Ctrl-C: then stop accepting, let the requests in
    flight finish (at most ``graceful_timeout_s``), answer 503 to any other, and return 0."""
    import uvicorn

    from .app import build_app

    sock = _bind(options.host, options.port)
    app = build_app(options)
    state = app.state.server

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                print(f"serve: listening on http://{shown}:{port} (models: "
                      f"{', '.join(options.models)}; docs at /docs)", file=sys.stderr, flush=True)

        def handle_exit(self, sig: int, frame: Any) -> None:
            state.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"),
                            timeout_keep_alive=5, limit_concurrency=max_connections,
                            timeout_graceful_shutdown=options.graceful_timeout_s,
                            server_header=False, lifespan="on")
    server = Server(config)
    # uvicorn raises the caught signal again once it has shut down; this handler makes that a
    # normal exit (status 0) instead of a death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise VisionTasksError("the server did not start (see the log above); check the models "
                               "and --device")
    print("serve: stopped", file=sys.stderr)
    return 0
