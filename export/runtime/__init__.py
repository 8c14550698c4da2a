"""The torch-free runtime of vision-tasks ONNX models: numpy + onnxruntime + an image decoder.

Nothing here imports torch or the training code, so an application can embed it with only
``numpy``, ``onnxruntime`` (or ``onnxruntime-gpu``), Pillow and OpenCV installed::

    from vision_tasks.export.runtime import Predictor

    predictor = Predictor("model.onnx")           # device="auto": TensorRT > CUDA > CPU
    prediction = predictor.predict_one("cat.jpg")
    print(prediction.name, prediction.score, predictor.provider)

- :class:`Predictor` reads and checks the model's metadata, letterboxes, batches and maps
  results back to original-image coordinates.
- :class:`Prediction` / :class:`Detection` are the typed results (``to_dict()`` for JSON).
- :func:`vision_tasks.export.runtime.batch.run_predict` is the ``vision-tasks predict`` batch job.
"""

from vision_tasks.contract import (
    CONTRACT_VERSION,
    ModelFileError,
    ModelMetadata,
)
from vision_tasks.errors import DeviceError, OutputExistsError
from vision_tasks.imaging import ImageError
from vision_tasks.results import ClassScore, Detection, Prediction

from .predictor import Predictor

__all__ = ["CONTRACT_VERSION", "ClassScore", "Detection", "DeviceError", "ImageError",
           "ModelFileError", "OutputExistsError",
           "ModelMetadata", "Prediction", "Predictor"]
