"""Which folders install as which packages (the rest of the metadata is in pyproject.toml).

One import name: the top-level folders ``tasks/`` and ``export/`` install as
``vision_tasks.tasks`` and ``vision_tasks.export``, and the ready configs of ``configs/`` ship
inside the package as ``vision_tasks.configs`` (read with ``importlib.resources``). The
package lists are computed, so a new sub-package is never forgotten.
"""

from setuptools import find_packages, setup

MAPPED = {"vision_tasks.tasks": "tasks", "vision_tasks.export": "export"}


def mapped_packages(name: str, folder: str) -> list[str]:
    return [name, *(f"{name}.{sub}" for sub in find_packages(folder))]


setup(
    packages=[
        *find_packages(include=["vision_tasks", "vision_tasks.*"]),
        *(pkg for name, folder in MAPPED.items() for pkg in mapped_packages(name, folder)),
        "vision_tasks.configs",
    ],
    package_dir={**MAPPED, "vision_tasks.configs": "configs"},
    package_data={"vision_tasks": ["py.typed"], "vision_tasks.configs": ["*.yaml"]},
)
