"""Backbones declare their feature maps truthfully; weights load from files; freezing holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vision_tasks.config import BackboneConfig
from vision_tasks.errors import CheckpointError, ConfigError
from vision_tasks.models.backbones import backbone_names, build_backbone
from vision_tasks.models.model import build_model
from vision_tasks.models.weights import load_backbone_weights
from vision_tasks.task_api import get_task


@pytest.mark.parametrize("name", backbone_names())
def test_feature_maps_match_declared_channels_and_strides_for_two_sizes(name: str) -> None:
    backbone = build_backbone(BackboneConfig(name=name), 64).eval()
    for height, width in [(64, 64), (72, 40)]:
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, height, width))
        shapes = [tuple(f.shape[1:]) for f in features]
        assert shapes == backbone.feature_shapes(height, width)
        for info, (c, _, _) in zip(backbone.feature_info, shapes, strict=True):
            assert info.channels == c
        strides = [info.stride for info in backbone.feature_info]
        assert strides == sorted(strides) and strides[-1] >= 4


def test_torchvision_backbones_reduce_by_their_declared_stride() -> None:
    backbone = build_backbone(BackboneConfig(name="resnet18"), 64).eval()
    shapes = backbone.feature_shapes(128, 96)
    for info, (_, h, w) in zip(backbone.feature_info, shapes, strict=True):
        assert (h, w) == (128 // info.stride, 96 // info.stride)


def test_torchvision_state_dict_loads_into_the_backbone(tmp_path: Path) -> None:
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(1)
    net = mobilenet_v3_small()
    torch.save(net.state_dict(), tmp_path / "mnv3.pth")
    backbone = build_backbone(BackboneConfig(name="mobilenet_v3_small"), 64)
    load_backbone_weights(backbone, str(tmp_path / "mnv3.pth"), "mobilenet_v3_small")
    assert torch.equal(backbone.stages[0][0][0].weight, net.features[0][0].weight)
    assert torch.equal(backbone.stages[-1][-1][0].weight, net.features[-1][0].weight)


def test_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
    backbone = build_backbone(BackboneConfig(name="mobilenet_v3_small"), 64)
    with pytest.raises(CheckpointError, match="r18.pth: not a state dict of this backbone"):
        load_backbone_weights(backbone, str(tmp_path / "r18.pth"), "mobilenet_v3_small")


def test_corrupt_or_missing_weights_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    backbone = build_backbone(BackboneConfig(name="lenet5"), 32)
    with pytest.raises(CheckpointError, match="bad.pt: cannot read weights"):
        load_backbone_weights(backbone, str(tmp_path / "bad.pt"), "lenet5")
    with pytest.raises(CheckpointError, match="missing.pt: weights file not found"):
        load_backbone_weights(backbone, str(tmp_path / "missing.pt"), "lenet5")


def test_backbone_from_a_product_checkpoint_loads_with_no_missing_keys(
        tiny_classify_run, tiny_classify_data, tiny_config) -> None:
    cfg = tiny_config(tiny_classify_data,
                               f"model.backbone.pretrained={tiny_classify_run.best}")
    model = build_model(cfg, get_task("classify"), 5)
    saved = torch.load(tiny_classify_run.best, weights_only=True)["ema"]
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved[f"backbone.{key}"]), key


def test_checkpoint_of_another_backbone_is_refused(tiny_classify_run, tiny_classify_data,
                                                   tiny_config) -> None:
    cfg = tiny_config(tiny_classify_data, "model.backbone.name=lenet5",
                               f"model.backbone.pretrained={tiny_classify_run.best}")
    with pytest.raises(ConfigError, match="holds a 'simple_cnn' backbone"):
        build_model(cfg, get_task("classify"), 5)


def test_frozen_backbone_is_unchanged_by_training_steps(tiny_classify_data, tiny_config) -> None:
    cfg = tiny_config(tiny_classify_data, "model.backbone.freeze=all")
    model = build_model(cfg, get_task("classify"), 5)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(3):
        loss = model(torch.rand(8, 3, 32, 32) * 255)["classify"].logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for key, value in model.backbone.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


def test_freezing_n_stages_freezes_exactly_those() -> None:
    backbone = build_backbone(BackboneConfig(name="resnet18"), 64)
    backbone.freeze(2)
    trainable = [any(p.requires_grad for p in stage.parameters()) for stage in backbone.stages]
    assert trainable == [False, False, True, True, True]
    backbone.train()
    assert not backbone.stages[1].training and backbone.stages[2].training


def test_layer_that_shrinks_the_map_below_one_pixel_is_named() -> None:
    cfg = BackboneConfig(name="simple_cnn", stages=[[{"type": "conv", "filters": 4, "f": 3, "p": 0}],
                                                     [{"type": "conv", "filters": 4, "f": 7, "p": 0}]])
    with pytest.raises(ConfigError, match=r"stages\[1\]\[0\] \(conv f=7"):
        build_backbone(cfg, 8)
