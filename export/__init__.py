"""Everything past training: ONNX export, its parity check, and the torch-free runtime.

- :mod:`vision_tasks.export.onnx_export` checkpoint -> self-describing ``model.onnx`` (``vision-tasks export``)
- :mod:`vision_tasks.export.parity` PyTorch vs onnxruntime on the same images (``--check``)
- :mod:`vision_tasks.export.onnx_eval` the ``.onnx`` evaluator behind ``vision-tasks val model.onnx``
- :mod:`vision_tasks.export.benchmark` ``vision-tasks benchmark``
- :mod:`vision_tasks.export.runtime` numpy + onnxruntime only: ``Predictor`` and ``vision-tasks predict``

This package module imports nothing, so ``import vision_tasks.export.runtime`` stays free of torch.
"""
