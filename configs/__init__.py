"""The ready configs (``<name>.yaml``), shipped inside the package as ``vision_tasks.configs``."""
