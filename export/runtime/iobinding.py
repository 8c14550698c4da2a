"""onnxruntime I/O binding: a batch in, the outputs left where the provider wrote them.

``session.run`` copies the uint8 batch to the device and every output back to host memory
on each call, into fresh numpy arrays. With :class:`BoundRunner` (``RuntimeOptions(
io_binding=True)``):

- the batch goes to the device once, from a staging buffer in pinned (page-locked) host
  memory when onnxruntime offers an allocator for it (:func:`pinned_buffer`);
- the outputs are bound to the device (GPU memory on CUDA / TensorRT) and come back as
  :class:`DeviceOutputs`, which copies an output to host memory the first time the decoder
  reads it, so an output nobody reads is never copied.

On the CPU provider the same calls run on host memory (the batch is bound without a copy;
there is no pinned memory to offer), which is how the path is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator, Mapping

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import _pybind_state as C

from vision_tasks.contract import INPUT_NAME

from .providers import CPU, CUDA, cuda_device_count

PINNED_NAMES = ("CudaPinned", "CUDA_Pinned")
"""onnxruntime's names of the CUDA provider's pinned host allocator (old and new builds)."""


class DeviceOutputs(Mapping[str, np.ndarray]):
    """A batch's graph outputs by name, as onnxruntime values on the provider's device;
    ``outputs[name]`` copies that one to a numpy array (host memory) on first access and
    keeps it. Reads like the ``dict[str, np.ndarray]`` that ``session.run`` gives."""

    def __init__(self, names: list[str], values: list[ort.OrtValue]) -> None:
        self._values = dict(zip(names, values, strict=True))
        self._host: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._host:
            self._host[name] = self._values[name].numpy()
        return self._host[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def copied(self) -> tuple[str, ...]:
        """The outputs copied to host memory so far."""
        return tuple(self._host)

    def device_of(self, name: str) -> str:
        """Where ``name`` lives before it is read, e.g. ``cpu`` or ``cuda``."""
        return self._values[name].device_name()


def output_device(session: ort.InferenceSession) -> tuple[str, int]:
    """``(onnxruntime device name, index)`` the outputs of ``session`` are bound to: the
    GPU of a CUDA / TensorRT session, else ``("cpu", 0)``."""
    provider = session.get_providers()[0]
    if provider == CPU:
        return "cpu", 0
    options = session.get_provider_options().get(provider, {})
    return "cuda", int(options.get("device_id", 0))


def _pinned_memory_infos(device_id: int) -> Iterator[ort.OrtMemoryInfo]:
    """Descriptions of pinned host memory of GPU ``device_id`` this build may allocate: a
    CUDA execution-provider device's host-accessible memory (onnxruntime's device API),
    then the CUDA provider's classic pinned allocator (registered as a shared allocator
    first, as allocating by description needs)."""
    with contextlib.suppress(Exception):
        for ep_device in ort.get_ep_devices():
            if "CUDA" in ep_device.ep_name and ep_device.device.device_id == device_id:
                info = ep_device.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
                if info is not None:
                    yield info
    for name in PINNED_NAMES:
        with contextlib.suppress(Exception):
            info = ort.OrtMemoryInfo(name, ort.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, device_id,
                                     ort.OrtMemType.CPU)
            with contextlib.suppress(Exception):
                C.create_and_register_allocator_v2(CUDA, info, {}, C.OrtArenaCfg(0, -1, -1, -1))
            yield info


def pinned_buffer(shape: tuple[int, ...], device_id: int) -> tuple[np.ndarray, ort.OrtValue] | None:
    """A uint8 ``shape`` buffer in pinned host memory of GPU ``device_id``: the numpy view to
    write the batch into, and the onnxruntime value to bind (same memory); None when this
    onnxruntime build offers no pinned allocator here (always so without a GPU)."""
    if cuda_device_count() == 0:
        return None
    for info in _pinned_memory_infos(device_id):
        with contextlib.suppress(Exception):
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.uint8,
                                                              memory_info=info)
            size = int(np.prod(shape))
            raw = (ctypes.c_uint8 * size).from_address(value.data_ptr())
            return np.ctypeslib.as_array(raw).reshape(shape), value
    return None


class BoundRunner:
    """``run(images)`` of one session through I/O binding (see the module docstring); safe
    to call from several threads at once (each thread binds its own call and stages its
    batch in its own buffer).

    Args:
        session: the session (any provider).
        output_names: the outputs to bind, in the order :class:`DeviceOutputs` lists them.
        pinned: stage the batch in pinned host memory when the session runs on a GPU and
            onnxruntime offers it (see :attr:`pinned_note`).
    """

    def __init__(self, session: ort.InferenceSession, output_names: list[str],
                 pinned: bool = True) -> None:
        self.session = session
        self.output_names = list(output_names)
        self.device, self.device_id = output_device(session)
        self.pinned = pinned and self.device != "cpu"
        self.pinned_note = ("pinned host memory" if self.pinned
                            else "not asked for" if self.device != "cpu"
                            else "none on the CPU provider")
        self._local = threading.local()

    def run(self, images: np.ndarray) -> DeviceOutputs:
        """uint8 ``[N, H, W, 3]`` -> the outputs, still on the session's device."""
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, self._stage(images))
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return DeviceOutputs(self.output_names, binding.get_outputs())

    def _stage(self, images: np.ndarray) -> ort.OrtValue:
        """The batch as an onnxruntime value: on the CPU bound in place; on a GPU through
        this thread's pinned staging buffer of that shape, else copied from ``images``."""
        images = np.ascontiguousarray(images)
        if self.device == "cpu":
            return ort.OrtValue.ortvalue_from_numpy(images)
        if self.pinned:
            buffers = self._local.__dict__.setdefault("buffers", {})
            if images.shape not in buffers:
                buffers[images.shape] = pinned_buffer(images.shape, self.device_id)
            staged = buffers[images.shape]
            if staged is not None:
                np.copyto(staged[0], images)
                return staged[1]
            self.pinned = False  # no pinned allocator in this build: say so, stop trying
            self.pinned_note = "no pinned allocator in this onnxruntime build"
        return ort.OrtValue.ortvalue_from_numpy(images, self.device, self.device_id)
