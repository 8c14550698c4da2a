"""Every activation of the course (and max / average pooling) builds and trains in the
course CNNs, set for the whole backbone or per layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vision_tasks.config import load_config
from vision_tasks.models.layers import ACTIVATIONS, Maxout
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

MODULE_OF = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "tanh": nn.Tanh,
             "sigmoid": nn.Sigmoid, "maxout": Maxout, "silu": nn.SiLU, "identity": nn.Identity}


def tiny_model(*overrides: str) -> nn.Module:
    cfg = load_config(None, ["data.image_size=16", *overrides], base={"task": "classify"})
    torch.manual_seed(0)
    return build_model(cfg, get_task("classify"), 3, load_pretrained=False)


def train_one_step(model: nn.Module) -> float:
    """One SGD step on 4 random 16x16 images; returns the loss."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 16, 16), generator=generator).float()
    labels = torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(images)["classify"], labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def test_every_activation_of_the_course_is_registered() -> None:
    assert {"relu", "leaky_relu", "elu", "tanh", "sigmoid", "maxout"} <= set(ACTIVATIONS)
    assert set(MODULE_OF) == set(ACTIVATIONS)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_simple_cnn_with_each_activation_and_pool_trains_one_step(act: str, pool: str) -> None:
    model = tiny_model("model.backbone.name=simple_cnn", "model.backbone.width=4",
                       "model.backbone.depths=[1, 1]", f"model.backbone.activation={act}",
                       f"model.backbone.pool={pool}")
    acts = [m for m in model.backbone.modules() if isinstance(m, MODULE_OF[act])]
    pools = [m for m in model.backbone.modules() if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)]
    assert len(acts) == 2 and all(type(p).__name__.lower().startswith(pool) for p in pools)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.out_channels == (8 if act == "maxout" else 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = train_one_step(model)
    assert math.isfinite(loss)
    changed = [k for k, v in model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.stages.0") for k in changed), "first stage learned nothing"
    assert any(k.startswith("head.") for k in changed)


def test_per_layer_activation_and_pool_kind_override_the_backbone_defaults() -> None:
    stages = ("[[{type: conv, filters: 4, act: maxout}, {type: pool, kind: avg}],"
              " [{type: conv, filters: 4, act: elu}, {type: conv, filters: 4, act: sigmoid},"
              " {type: pool}]]")
    model = tiny_model("model.backbone.name=simple_cnn", f"model.backbone.stages={stages}",
                       "model.backbone.activation=tanh", "model.backbone.pool=max")
    kinds = [type(m) for m in model.backbone.modules()
             if isinstance(m, (*MODULE_OF.values(), nn.MaxPool2d, nn.AvgPool2d))]
    assert kinds == [Maxout, nn.AvgPool2d, nn.ELU, nn.Sigmoid, nn.MaxPool2d]
    assert math.isfinite(train_one_step(model))


@pytest.mark.parametrize("act", ["leaky_relu", "elu", "tanh", "sigmoid", "maxout"])
def test_lenet5_takes_the_backbone_activation_and_pool(act: str) -> None:
    model = tiny_model("model.backbone.name=lenet5", f"model.backbone.activation={act}",
                       "model.backbone.pool=avg", "data.image_size=32",
                       "model.head.pool=flatten", "model.head.hidden=[12]")
    assert sum(isinstance(m, MODULE_OF[act]) for m in model.backbone.modules()) == 2
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.backbone.modules()) == 2
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert all(m.negative_slope == 0.1 for m in leaky)
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32))["classify"].shape == (2, 3)


def test_maxout_keeps_the_larger_of_each_pair_of_channels() -> None:
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0]]).view(1, 4, 1, 1)
    assert Maxout(2)(x).flatten().tolist() == [5.0, -2.0]
