"""Task plug-ins: one module per task, each exposing ``TASK``.

The core finds a task by the config's ``task`` value (``tasks/<task>.py``), so a new
task is one module here plus one config in ``configs/``.
"""
