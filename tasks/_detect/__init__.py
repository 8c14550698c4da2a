"""Parts of the ``detect`` task (and of tasks built on it, such as ``segment``).

- :mod:`.head`: anchor points, the decoupled dense head (class logits + distance
  distributions per point) and the box decoding;
- :mod:`.assigner`: the task-aligned assigner (which points learn which object);
- :mod:`.loss`: BCE on IoU-aware targets + CIoU + distribution focal loss;
- :mod:`.postprocess`: score threshold, top-k and class-aware NMS to a fixed K per image,
  traceable for the ONNX export.

The leading underscore keeps this package out of ``available_tasks()``.
"""
