"""vision-tasks: four computer-vision tasks from one shared CNN backbone.

This top-level module stays free of torch imports so that the ONNX runtime
(``vision_tasks.export.runtime``) can use the torch-free parts of the package.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
