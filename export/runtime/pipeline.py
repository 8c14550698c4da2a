"""Files -> predictions with decoding in worker threads, so the model never waits on disk.

Pillow and OpenCV release the GIL while they decode and resize, so a few threads keep
whole letterboxed batches ready ahead of the model. The model runs in
:attr:`Predictor.lanes <vision_tasks.export.runtime.predictor.Predictor>` threads, each taking a whole
batch (:meth:`Predictor.run_lane`) and turning its outputs into predictions, so that on the
CPU each core works through its own batch instead of all cores meeting after every layer of
one batch; onnxruntime releases the GIL too. Outcomes come back in input order; a file that
cannot be read or decoded gives an error entry instead of stopping the stream.

OpenCV's own thread pool is left as it is: ``imdecode`` is single-threaded and a resize to a
model-input size is below OpenCV's parallel threshold, so it does not compete with
onnxruntime's threads (``cv2.setNumThreads(1)`` measured no different).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

import numpy as np

from vision_tasks.imaging import ImageError, ImageSource, Letterbox
from vision_tasks.results import Prediction

from .decode import Outputs
from .providers import cpu_threads
from .sources import source_name


class StreamModel(Protocol):
    """What the pipeline needs of a model: :class:`~vision_tasks.export.runtime.Predictor`
    is one (it runs its own large batches through this module, so the dependency goes
    predictor -> pipeline only)."""

    batch_size: int
    lanes: int

    def load(self, source: ImageSource, keep_original: bool = False
             ) -> tuple[np.ndarray, Letterbox, np.ndarray | None]: ...

    def run_lane(self, images: np.ndarray) -> Outputs: ...

    def decode(self, outputs: Outputs, letterboxes: Sequence[Letterbox],
               sources: Sequence[str]) -> list[Prediction]: ...


@dataclass
class Prepared:
    """One decoded file: the model input or the reason it failed.

    Attributes:
        source: the path as given (``<bytes>``, ``<array>``... for other sources).
        image: uint8 ``[H, W, 3]`` letterboxed model input, None on error.
        letterbox: the mapping back to the original image, None on error.
        original: uint8 ``[h, w, 3]`` decoded image, kept only when asked (for drawing).
        error: one-line reason when the file could not be used, else None.
    """

    source: str
    image: np.ndarray | None = None
    letterbox: Letterbox | None = None
    original: np.ndarray | None = None
    error: str | None = None


@dataclass
class Outcome:
    """One input's result: a prediction, or the error that replaced it."""

    source: str
    prediction: Prediction | None = None
    error: str | None = None
    original: np.ndarray | None = None


def default_workers() -> int:
    """Decoding threads: enough to keep one model busy without starving it of cores."""
    return max(2, min(8, cpu_threads()))


def make_preparer(predictor: StreamModel, keep_original: bool = False
                  ) -> Callable[[ImageSource], Prepared]:
    """The per-file job run in worker threads: read, decode, letterbox with
    :meth:`Predictor.load` (the same model input, drawings or not)."""

    def prepare(source: ImageSource) -> Prepared:
        name = source_name(source)
        try:
            image, lb, original = predictor.load(source, keep_original)
        except ImageError as err:
            return Prepared(name, error=str(err))
        except Exception as err:  # never let one odd file stop a long run
            return Prepared(name, error=f"{name}: unexpected {type(err).__name__}: "
                                        f"{' '.join(str(err).split())}")
        return Prepared(name, image, lb, original)

    return prepare


@dataclass
class PreparedBatch:
    """Up to ``batch_size`` consecutive files, decoded and stacked by a worker thread.

    Attributes:
        images: uint8 ``[n, H, W, 3]`` model input of the ``n`` files that decoded (None
            when none did).
        good: those ``n`` files in order (their ``image`` is inside ``images``).
        errors: the files that could not be used.
    """

    images: np.ndarray | None
    good: list[Prepared]
    errors: list[Prepared]


def batch_stream(sources: Iterable[ImageSource], prepare: Callable[[ImageSource], Prepared],
                 batch_size: int, workers: int) -> Iterator[PreparedBatch]:
    """Batches of ``batch_size`` sources prepared in ``workers`` threads, in input order,
    ``workers + 1`` batches in flight (bounded memory, whatever the number of files).

    Workers also stack their batch: the consuming thread, which runs the model, then does
    almost no Python work per image, so it does not queue for the GIL behind the decoders.
    """
    iterator = iter(sources)
    chunks = iter(lambda: list(islice(iterator, batch_size)), [])

    def prepare_batch(chunk: list[ImageSource]) -> PreparedBatch:
        items = [prepare(s) for s in chunk]
        good = [i for i in items if i.error is None]
        images = np.stack([i.image for i in good]) if good else None
        for item in good:
            item.image = None  # the stacked copy is the one kept
        return PreparedBatch(images, good, [i for i in items if i.error is not None])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[PreparedBatch]] = deque(
            pool.submit(prepare_batch, c) for c in islice(chunks, workers + 1))
        while pending:
            done = pending.popleft().result()
            following = next(chunks, None)
            if following is not None:
                pending.append(pool.submit(prepare_batch, following))
            yield done


def predict_stream(predictor: StreamModel, sources: Iterable[ImageSource],
                   batch_size: int | None = None, workers: int | None = None,
                   keep_original: bool = False) -> Iterator[Outcome]:
    """Outcomes for ``sources`` in input order, batch by batch (within a batch, the files
    that failed come first).

    ``workers`` threads decode and letterbox the next batches while the model runs
    ``predictor.lanes`` batches at once; each inference call takes up to ``batch_size``
    images.
    """
    batch_size = batch_size or predictor.batch_size
    prepare = make_preparer(predictor, keep_original)

    def infer(batch: PreparedBatch) -> list[Outcome]:
        outcomes = [Outcome(item.source, error=item.error) for item in batch.errors]
        if batch.images is not None:
            predictions = predictor.decode(predictor.run_lane(batch.images),
                                           [b.letterbox for b in batch.good],
                                           [b.source for b in batch.good])
            outcomes += [Outcome(item.source, prediction=prediction, original=item.original)
                         for item, prediction in zip(batch.good, predictions, strict=True)]
        return outcomes

    lanes = predictor.lanes
    batches = batch_stream(sources, prepare, batch_size, workers or default_workers())
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="infer") as pool:
        running: deque[Future[list[Outcome]]] = deque()
        try:
            for batch in batches:
                running.append(pool.submit(infer, batch))
                if len(running) > lanes:  # every lane busy and one more batch queued
                    yield from running.popleft().result()
            while running:
                yield from running.popleft().result()
        finally:  # the consumer stopped early: stop decoding, drop what is queued
            batches.close()
            for future in running:
                future.cancel()
