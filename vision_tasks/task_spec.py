"""What a task is, in plain Python: the torch-free half of every task plug-in.

A task declares itself once, in its own module, as a :class:`TaskSpec`: its name, the
named outputs of its ONNX graph, the runtime's decoder of those outputs, whether its results
are COCO detections, the config sections it owns, the extra ONNX metadata it records, and
where its training side (head, loss, targets, post-processing, metric, drawing: a
:class:`vision_tasks.task_api.Task`) lives. The config validation, the exporter and the
runtime read the spec; only the trainer (and the exporter) load the training side, so the
runtime and the config never import torch.

Tasks are found through the entry-point group ``vision_tasks.tasks`` (see
:mod:`vision_tasks.plugins`), so a task can live in another distribution::

    [project.entry-points."vision_tasks.tasks"]
    count = "count_task:SPEC"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vision_tasks import plugins


@dataclass
class EmptySection:
    """A task section with no keys."""


@dataclass(frozen=True)
class Output:
    """One named output of the exported graph.

    ``shape`` uses ``N`` (batch), ``C`` (classes), ``K`` (max detections), ``Hm``/``Wm``
    (mask grid) for the sizes that vary, and integers for fixed ones: ``("N", "K", 4)``.
    """

    name: str
    dtype: Literal["float32", "int64"]
    shape: tuple[str | int, ...]


def no_metadata(cfg: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """The torch-free description of a task (see the module docstring).

    Attributes:
        name: the config's ``task`` value and the ONNX metadata's ``task``.
        outputs: the graph's outputs, in graph order.
        decoder: ``decode(outputs, i, letterbox, metadata, min_score) -> Prediction``: row
            ``i`` of a batch's outputs (numpy) -> the image's result in original-image
            pixels; numpy only (the runtime calls it).
        training: ``"module:attribute"`` of the training side, a
            :class:`vision_tasks.task_api.Task` instance (imported only when needed).
        coco_results: whether ``predict`` also writes ``coco_results.json`` (box results).
        head_config, loss_config, options_config: the dataclasses that validate the
            config's ``model.head``, ``loss`` and ``task_options`` sections.
        metadata: ``cfg -> dict`` of extra ONNX metadata: ``thresholds`` fills the
            contract's field, ``max_detections`` must agree with the graph, any other key
            is stored as one more JSON entry.
    """

    name: str
    outputs: tuple[Output, ...]
    decoder: Callable[..., Any]
    training: str
    coco_results: bool = False
    head_config: type = EmptySection
    loss_config: type = EmptySection
    options_config: type = EmptySection
    metadata: Callable[[Any], dict[str, Any]] = field(default=no_metadata)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def load_training(self) -> Any:
        """The training side (imports torch)."""
        return plugins.resolve(self.training)


def task_names() -> list[str]:
    """Every installed task (names only; nothing is imported)."""
    return plugins.names(plugins.TASKS)


def get_spec(name: str) -> TaskSpec:
    """The spec of the task called ``name``.

    Raises:
        KeyError: no such task (the message lists the installed ones), or its entry point
            names something that is not a :class:`TaskSpec` of that name.
    """
    spec = plugins.load(plugins.TASKS, name, "task")
    if not isinstance(spec, TaskSpec) or spec.name != name:
        raise KeyError(f"the entry point of task '{name}' ({plugins.TASKS}) names {spec!r}, "
                       f"not a vision_tasks.task_spec.TaskSpec called '{name}'")
    return spec
