"""Everything past training: ONNX export, its parity check, and the torch-free runtime.

- :mod:`export.onnx_export` checkpoint -> self-describing ``model.onnx`` (``vision-tasks export``)
- :mod:`export.parity` PyTorch vs onnxruntime on the same images (``--check``)
- :mod:`export.onnx_eval` the ``.onnx`` evaluator behind ``vision-tasks val model.onnx``
- :mod:`export.benchmark` ``vision-tasks benchmark``
- :mod:`export.runtime` numpy + onnxruntime only: ``Predictor`` and ``vision-tasks predict``

This package module imports nothing, so ``import export.runtime`` stays free of torch.
"""
