"""``vision-tasks predict --engine ray``: the local batch job (:mod:`.batch`), its model run on
a Ray cluster.

Ray Data takes the sources (found on the driver as the local engine finds them, so both
engines see the same files in the same order), decodes and letterboxes them in CPU tasks
(:func:`decode_batch_task`, the local pipeline's own preparer), and runs the model in a pool of
actors (:class:`PredictActor`), each holding one :class:`Predictor`, made once per actor: one
onnxruntime session, on CUDA for an actor given GPUs. The outcomes come back to the driver in
source order and go through :func:`.batch.run_predict`'s writer: ``predictions.jsonl``,
``errors.jsonl`` (the same messages), ``coco_results.json`` (one per box head of a multi-head
model), ``run.json`` and ``--resume`` are the local engine's, line for line.

Every node reads the sources and the model by the paths the driver gives (a shared file
system), with the same vision-tasks installed. Without ``address`` a local Ray is started for
the run (no dashboard, its errors only) and stopped after it; with one, the run joins that
cluster and leaves it running.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from vision_tasks.errors import ConfigError, VisionTasksError
from vision_tasks.imaging import Letterbox, load_letterboxed

from .batch import PredictSummary, run_predict
from .pipeline import Outcome, make_preparer
from .predictor import Predictor
from .providers import cpu_threads

# Ray Data columns: paths and messages as bytes (os.fsencode), since a file name that is not
# UTF-8 cannot be an Arrow string; letterboxes and predictions pickled (exact, any task).
Batch = dict[str, np.ndarray]
DECODE_TASK_CPUS = 0.5
"""CPUs a decoding task reserves: it waits on storage part of the time, so two share a core.
Differing from the actors' (whole CPUs) also keeps Ray Data from fusing decoding into the
actors, where it would take turns with the model on the actor's cores."""


@dataclass
class RayOptions:
    """Where and how wide the Ray run is.

    Attributes:
        address: a running cluster to join (``ray start --head`` printed it; ``"auto"``: the
            one on this machine); None starts a local Ray for this run.
        num_cpus: CPUs of a local Ray (default: the cores this process may use).
        num_actors: model actors (default: as many as the GPUs hold with ``gpus_per_actor``,
            else one per two CPUs, leaving the others to the decoding tasks); at least one CPU
            of the cluster is always left to decoding.
        gpus_per_actor: GPUs each actor holds (a fraction shares one); 0: CPU actors.
        threads: onnxruntime CPU threads of each CPU actor (each reserves as many CPUs).
    """

    address: str | None = None
    num_cpus: int | None = None
    num_actors: int | None = None
    gpus_per_actor: float = 0.0
    threads: int = 1


@dataclass(frozen=True)
class ModelSettings:
    """What every actor needs to build the same :class:`Predictor` as the driver's."""

    path: str
    input_size: tuple[int, int]
    pad_value: int
    batch_size: int
    score_threshold: float
    reduced_decode: bool

    @classmethod
    def of(cls, predictor: Predictor) -> ModelSettings:
        return cls(str(predictor.path.resolve()), predictor.input_size,
                   predictor.metadata.pad_value, predictor.batch_size,
                   predictor.score_threshold, predictor.reduced_decode)


@dataclass(frozen=True)
class _Loader:
    """:meth:`Predictor.load` without a session, for the decoding tasks."""

    settings: ModelSettings

    def load(self, source: str, keep_original: bool = False
             ) -> tuple[np.ndarray, Letterbox, np.ndarray | None]:
        s = self.settings
        return load_letterboxed(source, s.input_size, s.pad_value, reduce=s.reduced_decode,
                                keep_original=keep_original)


def decode_batch_task(batch: Batch, settings: ModelSettings) -> Batch:
    """CPU task: ``source`` -> ``image`` uint8 ``[n, H, W, 3]`` (zeros where the file failed),
    ``letterbox`` and ``error`` (empty where it did not), with the local pipeline's messages."""
    prepare = make_preparer(_Loader(settings))
    items = [prepare(os.fsdecode(source)) for source in batch["source"]]
    blank = np.zeros((*settings.input_size, 3), np.uint8)
    return {
        "source": batch["source"],
        "image": np.stack([blank if item.image is None else item.image for item in items]),
        "letterbox": _objects(pickle.dumps(item.letterbox) for item in items),
        "error": _objects(os.fsencode(item.error or "") for item in items),
    }


class PredictActor:
    """One model session for the actor's life; each call runs one batch of decoded images."""

    def __init__(self, settings: ModelSettings, device: str, threads: int | None) -> None:
        self.predictor = Predictor(settings.path, device=device, threads=threads,
                                   batch_size=settings.batch_size, lanes=1,
                                   score_threshold=settings.score_threshold,
                                   reduced_decode=settings.reduced_decode)

    def __call__(self, batch: Batch) -> Batch:
        """``image``, ``letterbox`` -> ``prediction`` (pickled; empty where ``error`` says
        the file failed)."""
        good = [i for i, error in enumerate(batch["error"]) if not error]
        predictions = [b""] * len(batch["error"])
        if good:
            outputs = self.predictor.run(batch["image"][good])
            decoded = self.predictor.decode(
                outputs, [pickle.loads(batch["letterbox"][i]) for i in good],
                [os.fsdecode(batch["source"][i]) for i in good])
            for i, prediction in zip(good, decoded, strict=True):
                predictions[i] = pickle.dumps(prediction)
        return {"source": batch["source"], "error": batch["error"],
                "prediction": _objects(predictions)}


def _objects(values: Any) -> np.ndarray:
    values = list(values)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


class RayClusterError(VisionTasksError):
    """The Ray cluster of ``--address`` cannot be joined."""


CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` address must answer before Ray is asked to join it: Ray itself retries
    an unreachable one for ever, a warning every few seconds.

    Raises:
        RayClusterError: nothing listens there.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", a ray:// client address...: Ray checks those itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RayClusterError(f"--address {address}: no Ray cluster answers there "
                              f"({err.strerror or err}); start one with `ray start --head` "
                              "(it prints its address) or pass the address it printed") from None


class RaySession:
    """Ray for one run: joined or started on first use, stopped by :meth:`close` (a started
    local Ray is shut down; a joined cluster only loses this driver)."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.started = False

    def start(self) -> None:
        if self.started or ray.is_initialized():
            return
        quiet = {"include_dashboard": False, "logging_level": logging.ERROR,
                 "log_to_driver": False}
        if self.options.address:
            _check_reachable(self.options.address)
            if self.options.address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
                # Ray then joins without its token, and a cluster that wants one (Ray's
                # default) makes it retry for ever, one warning every few seconds.
                warnings.warn(f"joining {self.options.address} without token authentication; "
                              "if its warnings say InvalidAuthToken, stop this and set "
                              "RAY_AUTH_MODE=token (or pass --address auto on a machine of "
                              "the cluster)", stacklevel=1)
            try:
                ray.init(address=self.options.address, **quiet)
            except ConnectionError as err:  # "auto" and no Ray running here
                raise RayClusterError(f"--address {self.options.address}: "
                                      f"{' '.join(str(err).split())}") from None
        else:
            # "local": a new Ray, even where RAY_ADDRESS or a `ray start` names a cluster
            ray.init(address="local", num_cpus=self.options.num_cpus or cpu_threads(), **quiet)
        self.started = True

    def close(self) -> None:
        if self.started:
            ray.shutdown()
            self.started = False


def _device(options: RayOptions) -> str:
    return "cuda" if options.gpus_per_actor > 0 else "cpu"


def _num_actors(options: RayOptions) -> int:
    """``options.num_actors``, or the default; checked against the nodes of the cluster, since
    a pool that does not fit (or leaves no CPU to the decoding tasks) would wait forever.

    Raises:
        ConfigError: the actors asked for do not fit.
    """
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cpus = sum(int(node.get("CPU", 0)) for node in nodes)
    gpus_each = options.gpus_per_actor
    cpus_each = 1 if gpus_each > 0 else options.threads
    fit = (cpus - 1) // cpus_each  # one CPU kept for decoding
    if gpus_each > 0:
        fit = min(fit, sum(int(node.get("GPU", 0.0) // gpus_each) for node in nodes))
    wanted = options.num_actors or (fit if gpus_each > 0 else max(1, cpus // (2 * cpus_each)))
    if wanted > fit or fit < 1:
        each = f"{gpus_each:g} GPU and 1 CPU" if gpus_each > 0 else f"{cpus_each} CPU"
        gpus = sum(node.get("GPU", 0.0) for node in nodes)
        if fit >= 1:
            fix = f"pass --num-actors {fit} or fewer"
        elif gpus_each > 0 and gpus == 0:
            fix = "pass --gpus-per-actor 0 for CPU actors, or join a cluster with GPUs"
        else:
            fix = "pass fewer --threads or --gpus-per-actor, or join a larger cluster"
        raise ConfigError(f"the Ray cluster ({cpus} CPUs, {gpus:g} GPUs) has room for "
                          f"{max(fit, 0)} model actor{'' if fit == 1 else 's'} of {each} each, "
                          f"one CPU kept for decoding; {fix}")
    return wanted


def ray_stream(settings: ModelSettings, options: RayOptions, session: RaySession,
               sources: list[str]) -> Iterator[Outcome]:
    """The outcomes of ``sources``, in their order, computed on Ray (see the module
    docstring); starts ``session`` when there is something to do."""
    if not sources:
        return
    session.start()
    with _ordered_and_quiet():
        yield from _outcomes(settings, options, sources)


@contextmanager
def _ordered_and_quiet() -> Iterator[None]:
    """Ray Data settings for this run, put back after it (an application may use Ray Data
    otherwise): results in input order, no progress bars (``run_predict`` shows its own), no
    execution plan and timing logged per run."""
    context = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, context.enable_progress_bars,
             logger.level)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         level) = saved
        logger.setLevel(level)


def _outcomes(settings: ModelSettings, options: RayOptions,
              sources: list[str]) -> Iterator[Outcome]:
    """The Ray Data pipeline: one block per batch of sources (so a decoding task holds one
    batch of images), decoded in tasks, predicted by the actor pool, read back in order."""
    batch = settings.batch_size
    dataset = (
        ray.data.from_items([{"source": os.fsencode(s)} for s in sources],
                            override_num_blocks=max(1, -(-len(sources) // batch)))
        .map_batches(decode_batch_task, fn_kwargs={"settings": settings}, batch_size=batch,
                     batch_format="numpy", num_cpus=DECODE_TASK_CPUS)
        .map_batches(PredictActor, batch_size=batch, batch_format="numpy",
                     fn_constructor_kwargs={"settings": settings, "device": _device(options),
                                            "threads": (None if options.gpus_per_actor > 0
                                                        else options.threads)},
                     compute=ray.data.ActorPoolStrategy(size=_num_actors(options)),
                     num_cpus=1 if options.gpus_per_actor > 0 else options.threads,
                     num_gpus=options.gpus_per_actor or None)
    )
    for rows in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for source, error, blob in zip(rows["source"], rows["error"], rows["prediction"],
                                       strict=True):
            name = os.fsdecode(source)
            if error:
                yield Outcome(name, error=os.fsdecode(error))
            else:
                yield Outcome(name, prediction=pickle.loads(blob))


def check_options(options: RayOptions, device: str) -> None:
    """``--device`` follows ``--gpus-per-actor`` on Ray; a contradiction is a one-line error.

    Raises:
        ConfigError: a CUDA device without GPUs per actor, or negative GPUs.
    """
    if options.gpus_per_actor < 0:
        raise ConfigError(f"--gpus-per-actor must be 0 or more, got {options.gpus_per_actor:g}")
    if device not in ("auto", "cpu") and options.gpus_per_actor == 0:
        raise ConfigError(f"--device {device} with --engine ray: pass --gpus-per-actor G (GPUs "
                          "each actor holds); without it the actors run on CPUs")
    if device == "cpu" and options.gpus_per_actor > 0:
        raise ConfigError("--device cpu with --gpus-per-actor: pass one or the other")


def run_predict_ray(predictor: Predictor, sources: list[str], out: str | os.PathLike,
                    options: RayOptions, save_images: bool = False, resume: bool = False,
                    overwrite: bool = False, progress: bool = True,
                    retry_errors: bool = False) -> PredictSummary:
    """:func:`.batch.run_predict` with the model run on Ray; ``predictor`` (the driver's, on
    the CPU) checks the model, names the run (``run.json``) and writes the COCO results."""
    session = RaySession(options)
    settings = ModelSettings.of(predictor)
    try:
        return run_predict(predictor, sources, Path(out), save_images=save_images,
                           resume=resume, overwrite=overwrite, progress=progress,
                           retry_errors=retry_errors,
                           stream=lambda todo: ray_stream(settings, options, session, todo))
    finally:
        session.close()
