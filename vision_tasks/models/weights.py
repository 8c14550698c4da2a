"""Starting weights for a backbone: a local file or torchvision's download, then freezing.

``model.backbone.pretrained`` accepts
- a torchvision state dict saved with ``torch.save`` (e.g. ``resnet18-f37072fd.pth``);
- any checkpoint of this product, of any task: its backbone part is taken
  (the EMA weights when the checkpoint has them);
- ``torchvision:DEFAULT`` or a torchvision weights name such as
  ``torchvision:IMAGENET1K_V1`` (needs a machine that can download).
Files are read with ``torch.load(weights_only=True)``: nothing in them is executed.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vision_tasks.errors import CheckpointError, ConfigError, first_sentence
from vision_tasks.models.backbones import Backbone

CHECKPOINT_FORMAT = "vision-tasks-checkpoint"


def read_weights_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` and one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a weights file" if path.is_dir() else "weights file not found"
        raise CheckpointError(f"{path}: {what}; check the path")
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" and head[1:2] in (b"\x03", b"\x04", b"\x05"):  # torch.save: a zip
        raise CheckpointError(f"{path}: refused: a plain Python pickle (pickle.dump), not a "
                              "file of torch.save, and it was not read; pass a checkpoint "
                              "written by vision-tasks train, or a state dict saved with "
                              "torch.save(model.state_dict())")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # not a pickle of ours (another file)
            raise CheckpointError(_unreadable(path, err)) from None
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path}: refused: the file holds Python objects{what}, not "
                              "tensors, and nothing in it was run; pass a checkpoint written by "
                              "vision-tasks train, or a state dict saved with "
                              "torch.save(model.state_dict())") from None
    except Exception as err:  # a truncated or corrupt zip, a file of another kind...
        raise CheckpointError(_unreadable(path, err)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a state dict or a vision-tasks checkpoint, "
                              f"got {type(data).__name__}")
    return data


def _unreadable(path: Path, err: Exception) -> str:
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.S)
    reason = first_sentence(unpickler.group(1) if unpickler else str(err)) or "no message"
    return (f"{path}: cannot read weights ({type(err).__name__}: {reason}); the file is "
            "truncated, corrupt or not a PyTorch file: copy it again, or use a file written by "
            "torch.save or by vision-tasks train")


def load_model_weights(model: nn.Module, weights: Any, source: str | Path, fits: str,
                       fix: str) -> None:
    """Load ``weights`` (a state dict) into ``model`` exactly, or raise one line naming what
    does not fit ``fits`` (e.g. "the model its config builds"): how many tensors are missing,
    unexpected and of another shape, with an example of each, and ``fix``."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{source}: its weights are a {type(weights).__name__}, not a "
                              f"state dict; {fix}")
    ours = model.state_dict()
    missing = [k for k in ours if k not in weights]
    unexpected = [k for k in weights if k not in ours]
    shaped = [k for k in ours if k in weights and hasattr(weights[k], "shape")
              and tuple(weights[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or shaped:
        parts = [f"{len(missing)} missing" + (f" (e.g. {missing[0]})" if missing else ""),
                 f"{len(unexpected)} unexpected" + (f" (e.g. {unexpected[0]})" if unexpected else "")]
        if shaped:
            k = shaped[0]
            parts.append(f"{len(shaped)} of another shape (e.g. {k}: "
                         f"{list(weights[k].shape)} vs {list(ours[k].shape)})")
        raise CheckpointError(f"{source}: its weights do not fit {fits}: {', '.join(parts)}; {fix}")
    model.load_state_dict(weights)


def backbone_state_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    weights = ckpt.get("ema") or ckpt["model"]
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def load_backbone_weights(backbone: Backbone, spec: str, backbone_name: str) -> str:
    """Load ``spec`` into ``backbone``; returns a one-line description of what was loaded."""
    if spec.startswith("torchvision:"):
        return _load_torchvision_download(backbone, spec.split(":", 1)[1], backbone_name)
    data = read_weights_file(spec)
    if data.get("format") == CHECKPOINT_FORMAT:
        source_name = data["config"]["model"]["backbone"]["name"]
        if source_name != backbone_name:
            raise ConfigError(f"model.backbone.pretrained: {spec} holds a '{source_name}' backbone, "
                              f"but model.backbone.name is '{backbone_name}'; make them match")
        state = backbone_state_from_checkpoint(data)
        _load_exact(backbone, state, spec)
        return f"backbone of {data['task']} checkpoint {spec}"
    for key in ("state_dict", "model"):  # common wrappers around a plain state dict
        if isinstance(data.get(key), dict):
            data = data[key]
    _load_torchvision_state(backbone, data, spec)
    return f"torchvision weights {spec}"


def _load_exact(backbone: Backbone, state: dict[str, torch.Tensor], source: str) -> None:
    ours = backbone.state_dict()
    for key, value in state.items():
        if key in ours and tuple(value.shape) != tuple(ours[key].shape):
            raise CheckpointError(
                f"{source}: backbone tensor {key} has shape {tuple(value.shape)}, this backbone "
                f"expects {tuple(ours[key].shape)}; use the source run's model.backbone settings "
                "(width, depths, stages, ...)")
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: backbone weights do not fit: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]}); was it trained with other backbone settings?")


def _load_torchvision_state(backbone: Backbone, state: dict[str, Any], source: str) -> None:
    ours = backbone.state_dict()
    mapped, missing = {}, []
    for key in ours:
        tv_key = backbone.torchvision_key(key)
        if tv_key is None or tv_key not in state:
            missing.append(tv_key or key)
            continue
        mapped[key] = state[tv_key]
    if missing or not mapped:
        raise CheckpointError(
            f"{source}: not a state dict of this backbone ({len(missing)} of {len(ours)} tensors "
            f"missing, e.g. {missing[:3]}); pass a torchvision state dict of the same architecture "
            "or a vision-tasks checkpoint")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise CheckpointError(f"{source}: tensor {backbone.torchvision_key(key)} has shape "
                                  f"{tuple(value.shape)}, the backbone expects {tuple(ours[key].shape)}")
    backbone.load_state_dict(mapped, strict=True)


def _load_torchvision_download(backbone: Backbone, weights_name: str, backbone_name: str) -> str:
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(backbone_name)
        weights = enum.DEFAULT if weights_name == "DEFAULT" else enum[weights_name]
    except (ValueError, KeyError):
        raise ConfigError(f"model.backbone.pretrained: torchvision has no weights "
                          f"'{weights_name}' for {backbone_name}") from None
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as err:
        raise ConfigError(
            f"model.backbone.pretrained: could not download {weights} ({type(err).__name__}); "
            "download the .pth file elsewhere and set pretrained to its local path") from None
    _load_torchvision_state(backbone, state, str(weights))
    return f"torchvision weights {weights}"


def apply_freeze(backbone: Backbone, freeze: str | int) -> int:
    """Freeze ``all``, ``none`` or the first N stages; returns the number frozen."""
    n = len(backbone.stages) if freeze == "all" else 0 if freeze == "none" else int(freeze)
    backbone.freeze(n)
    return backbone.frozen_stages
