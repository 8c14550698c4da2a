"""``vision-tasks serve --engine ray``: the same Starlette app as a Ray Serve deployment, for
more than one machine.

Each replica builds the app of :mod:`.app` from the same :class:`ServeOptions` (its models,
its batching and limits, its token), so the answers are the same JSON as the local server's;
Ray Serve's HTTP proxy routes requests to the replicas and adds or removes replicas when
autoscaling is on (``--max-replicas``). A model path must name the same file on every node
of the cluster (a shared or copied folder).
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from vision_tasks.errors import VisionTasksError

from .options import ServeOptions

APP_NAME = "vision-tasks"
DEFAULT_TARGET_ONGOING = 8.0


@dataclass(frozen=True)
class RayServeOptions:
    """How the deployment is spread: a fixed ``replicas``, or autoscaling between
    ``min_replicas`` and ``max_replicas`` aiming at ``target_ongoing_requests`` per replica."""

    address: str | None = None
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    gpus_per_replica: float = 0.0

    def deployment_options(self, options: ServeOptions) -> dict:
        """Keyword arguments of ``serve.deployment(...).options``."""
        if self.max_replicas is None and (self.min_replicas is not None
                                          or self.target_ongoing_requests is not None):
            raise VisionTasksError("--min-replicas and --target-ongoing-requests tune "
                                   "autoscaling; add --max-replicas to turn it on")
        if self.max_replicas is not None and self.replicas is not None:
            raise VisionTasksError("--replicas fixes the replica count, --max-replicas scales "
                                   "it; pass one of them")
        actor = {"num_cpus": options.threads or 1, "num_gpus": self.gpus_per_replica}
        # A replica takes more requests than its batch holds, so that batches fill.
        kwargs: dict = {"ray_actor_options": actor,
                        "max_ongoing_requests": max(2 * options.max_batch, 16),
                        "graceful_shutdown_timeout_s": options.graceful_timeout_s}
        if self.max_replicas is None:
            kwargs["num_replicas"] = self.replicas or 1
        else:
            low = 1 if self.min_replicas is None else self.min_replicas
            if not 0 <= low <= self.max_replicas:
                raise VisionTasksError(f"--min-replicas {low} must be in [0, --max-replicas "
                                       f"{self.max_replicas}]")
            kwargs["autoscaling_config"] = {
                "min_replicas": low, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests or DEFAULT_TARGET_ONGOING}
        return kwargs


def _ingress():
    """The deployment class: Ray Serve calls ``__serve_build_asgi_app__`` in each replica."""
    from ray import serve

    @serve.ingress()
    class VisionTasksServer:
        def __init__(self, options: ServeOptions) -> None:
            self.options = options

        def __serve_build_asgi_app__(self):
            from .app import build_app

            return build_app(self.options)

    return VisionTasksServer


def run_ray(options: ServeOptions, spread: RayServeOptions) -> int:
    """Deploy on Ray (joining ``spread.address``, else a local Ray started for this run),
    serve on ``options.host``:``options.port`` until SIGTERM or Ctrl-C, then shut down."""
    import ray
    from ray import serve

    if options.port == 0:
        raise VisionTasksError("--engine ray needs a fixed --port (Ray Serve's proxy listens "
                               "on it)")
    kwargs = spread.deployment_options(options)
    # Absolute paths: the replicas do not run in this folder.
    options = replace(options, models={name: str(Path(path).resolve())
                                       for name, path in options.models.items()})
    ray.init(address=spread.address, include_dashboard=False, log_to_driver=False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": options.host, "port": options.port})
        deployment = serve.deployment(_ingress(), name=APP_NAME).options(**kwargs)
        serve.run(deployment.bind(options), name=APP_NAME, route_prefix="/")
        print(f"serve: listening on http://{options.host}:{options.port} on Ray "
              f"({spread.address or 'local'}; models: {', '.join(options.models)})",
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    print("serve: stopped", file=sys.stderr)
    return 0
