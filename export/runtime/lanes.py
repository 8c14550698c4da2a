"""The sessions a stream's lanes run on: one shared by every lane, or one per lane thread.

``RuntimeOptions(shared_session=True)`` (the default): the lanes share one session
(onnxruntime runs concurrent calls of one session safely); on the CPU it has
``threads // lanes`` intra-op threads, on a GPU it is the predictor's own. ``False``: each
lane thread builds its own on first use (on a GPU each gets its own CUDA stream and memory
arena, at the price of the weights and arena once per lane).

With ``RuntimeOptions(io_binding=True)`` every session is run through its own
:class:`~vision_tasks.export.runtime.iobinding.BoundRunner`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from vision_tasks.contract import INPUT_NAME

from .decode import Outputs
from .iobinding import BoundRunner


class LaneSessions:
    """The session of the calling lane thread, built on first use by ``build``.

    Args:
        build: makes one session (called once when shared, once per thread otherwise).
        shared: one session for every thread, or one per thread.
    """

    def __init__(self, build: Callable[[], ort.InferenceSession], shared: bool) -> None:
        self._build = build
        self.shared = shared
        self._lock = threading.Lock()  # held while the shared session is built
        self._count_lock = threading.Lock()
        self._shared: ort.InferenceSession | None = None
        self._local = threading.local()
        self.built = 0  # sessions built so far

    def get(self) -> ort.InferenceSession:
        """The calling thread's session."""
        if self.shared:
            if self._shared is None:
                with self._lock:
                    if self._shared is None:
                        self._shared = self._new()
            return self._shared
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._new()
        return session

    def _new(self) -> ort.InferenceSession:
        session = self._build()
        with self._count_lock:
            self.built += 1
        return session


class SessionRunner:
    """``run(session, images)``: ``session.run`` of every output, or through I/O binding
    (one :class:`BoundRunner` per session) when ``io_binding``."""

    def __init__(self, output_names: list[str], io_binding: bool, pinned: bool) -> None:
        self.output_names = list(output_names)
        self.io_binding = io_binding
        self.pinned = pinned
        self._bound: dict[int, BoundRunner] = {}
        self._lock = threading.Lock()

    def bound(self, session: ort.InferenceSession) -> BoundRunner:
        """The I/O-binding runner of ``session`` (made on first use)."""
        key = id(session)
        if key not in self._bound:
            with self._lock:
                if key not in self._bound:
                    self._bound[key] = BoundRunner(session, self.output_names, self.pinned)
        return self._bound[key]

    def run(self, session: ort.InferenceSession, images: np.ndarray) -> Outputs:
        """uint8 ``[N, H, W, 3]`` -> outputs by name (a lazy
        :class:`~vision_tasks.export.runtime.iobinding.DeviceOutputs` with I/O binding)."""
        if self.io_binding:
            return self.bound(session).run(images)  # type: ignore[return-value]
        values = session.run(self.output_names, {INPUT_NAME: images})
        return dict(zip(self.output_names, values, strict=True))
