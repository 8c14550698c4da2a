"""`vision-tasks summary`: the course's parameter table, with the truth about biases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.errors import ConfigError
from vision_tasks.inspect.layer_table import summarize_model
from vision_tasks.inspect.summary import format_table, summarize_source
from vision_tasks.models.backbones import backbone_names
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

LENET5 = Path(__file__).resolve().parents[1] / "configs" / "lenet5.yaml"

# The course's table (No, layer, input, filter, output, activation size, weights, biases,
# parameters) with one bias per FC unit: 120, 84 and 10, not 1.
LENET5_TABLE = [
    (1, "Input", "-", "-", "32*32*3", 3072, 0, 0, 0),
    (2, "Conv 1", "32*32*3", "6 filters * 5*5*3", "28*28*6", 4704, 450, 6, 456),
    (3, "ReLU 1", "28*28*6", "-", "28*28*6", 4704, 0, 0, 0),
    (4, "Maxpool 1", "28*28*6", "2*2*6", "14*14*6", 1176, 0, 0, 0),
    (5, "Conv 2", "14*14*6", "16 filters * 5*5*6", "10*10*16", 1600, 2400, 16, 2416),
    (6, "ReLU 2", "10*10*16", "-", "10*10*16", 1600, 0, 0, 0),
    (7, "Maxpool 2", "10*10*16", "2*2*16", "5*5*16", 400, 0, 0, 0),
    (8, "FC 3", "5*5*16 = 400", "-", "120", 120, 48000, 120, 48120),
    (9, "ReLU 3", "120", "-", "120", 120, 0, 0, 0),
    (10, "FC 4", "120", "-", "84", 84, 10080, 84, 10164),
    (11, "ReLU 4", "84", "-", "84", 84, 0, 0, 0),
    (12, "FC 5 (output)", "84", "-", "10", 10, 840, 10, 850),
]


def rows_of(table) -> list[tuple]:
    return [(r.no, r.layer, r.input_dims, r.filter_dims, r.output_dims, r.activation_size,
             r.weights, r.biases, r.parameters) for r in table.rows]


def test_lenet5_summary_is_the_course_table_with_one_bias_per_unit() -> None:
    summary = summarize_source(LENET5)
    assert rows_of(summary.table) == LENET5_TABLE
    assert summary.table.total == summary.table.trainable == 62_006
    assert summary.table.frozen == 0
    assert summary.table.total == sum(p.numel() for p in summary.model.parameters())


def test_summary_cli_prints_every_lenet5_layer_the_true_total_and_the_slide_note(capsys) -> None:
    assert main(["summary", str(LENET5)]) == 0
    out = capsys.readouterr().out
    for expected in ("6 filters * 5*5*3", "28*28*6", "2*2*16", "5*5*16 = 400", "48000", "48120",
                     "10164", "850", "10 classes"):
        assert expected in out, expected
    assert "Total learnable parameters: 62,006" in out
    assert "61,795" in out and "1 bias per FC layer" in out
    assert "Normalize" in out and "no learnable parameters" in out


def test_classes_option_sets_the_output_layer_of_a_config() -> None:
    rows = rows_of(summarize_source(LENET5, classes=5).table)
    assert rows[-1][4:] == ("5", 5, 420, 5, 425)


def test_maxout_conv_shows_twice_the_filters_and_avg_pool_its_window() -> None:
    table = summarize_source(LENET5, ["model.backbone.activation=maxout",
                                      "model.backbone.pool=avg"]).table
    rows = {r.layer: r for r in table.rows}
    assert rows["Conv 1"].filter_dims == "12 filters * 5*5*3"
    assert (rows["Conv 1"].output_dims, rows["Conv 1"].parameters) == ("28*28*12", 12 * 76)
    assert (rows["Maxout 1"].filter_dims, rows["Maxout 1"].output_dims) == ("max of 2", "28*28*6")
    assert (rows["Avgpool 1"].filter_dims, rows["Avgpool 1"].output_dims) == ("2*2*6", "14*14*6")
    assert rows["Conv 2"].filter_dims == "32 filters * 5*5*6"


def classify_model(overrides: list[str], device: str = "cpu", classes: int = 7) -> torch.nn.Module:
    cfg = load_config(None, ["data.image_size=32", *overrides], base={"task": "classify"})
    with torch.device(device):
        return build_model(cfg, get_task("classify"), classes, load_pretrained=False)


@pytest.mark.parametrize("name", backbone_names())
def test_summary_parameters_equal_numel_for_every_backbone(name: str) -> None:
    # On the meta device: the same modules and shapes as on the CPU, without initialising
    # 40 M weights (see the next test for the CPU build).
    model = classify_model([f"model.backbone.name={name}"], "meta")
    table = summarize_model(model, (32, 32))
    numel = sum(p.numel() for p in model.parameters())
    assert sum(r.parameters for r in table.rows) == table.total == numel
    assert all(r.activation_size for r in table.rows), "every row ran"
    assert len(table.rows) < 40


def test_every_depth_partitions_the_same_parameters_and_freezing_is_counted() -> None:
    overrides = ["model.backbone.name=resnet18", "model.backbone.freeze=2"]
    model = classify_model(overrides)
    assert rows_of(summarize_model(model, (32, 32))) == rows_of(
        summarize_model(classify_model(overrides, "meta"), (32, 32)))
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    tables = {depth: summarize_model(model, (32, 32), depth) for depth in (0, 1, 2, "all")}
    assert len(tables[0].rows) < len(tables[1].rows) < len(tables[2].rows) <= len(tables["all"].rows)
    for table in tables.values():
        assert sum(r.parameters for r in table.rows) == table.total
        assert sum(r.frozen for r in table.rows) == table.frozen == frozen > 0
    labels = [r.layer for r in tables[0].rows]
    assert "layer1: 2 x BasicBlock (frozen)" in labels and "layer2: 2 x BasicBlock" in labels


def test_summary_of_a_checkpoint_uses_its_classes_and_refuses_classes(tiny_classify_run,
                                                                      capsys) -> None:
    summary = summarize_source(tiny_classify_run.best)
    assert summary.table.rows[-1].output_dims == "5"
    assert "5 classes" in summary.title and "circle" in summary.title
    assert main(["summary", str(tiny_classify_run.best), "--classes", "3"]) == 2
    assert "drop --classes" in capsys.readouterr().err


def test_input_size_rebuilds_a_config_and_explains_a_flatten_head_that_cannot_follow(capsys):
    table = summarize_source(LENET5, input_size=(28, 28)).table
    assert [r.output_dims for r in table.rows][:8] == [
        "28*28*3", "24*24*6", "24*24*6", "12*12*6", "8*8*16", "8*8*16", "4*4*16", "120"]
    assert main(["summary", str(LENET5), "--input-size", "40", "32"]) == 2
    err = capsys.readouterr().err
    assert "lenet5.yaml" in err and "40x32" in err and "built for 32x32" in err


def test_config_layer_that_shrinks_below_one_pixel_is_an_error_naming_file_and_layer(
        tmp_path: Path, capsys) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("task: classify\nmodel:\n  backbone:\n    name: simple_cnn\n    stages:\n"
                      "      - [{type: conv, filters: 4, f: 3, p: 0}, {type: pool, f: 2}]\n"
                      "      - [{type: conv, filters: 8, f: 5, p: valid}]\n"
                      "data:\n  image_size: 8\n")
    with pytest.raises(ConfigError, match=r"stages\[1\]\[0\] \(conv f=5"):
        summarize_source(config)
    assert main(["summary", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: ") and "stages[1][0]" in err and "does not fit" in err


def test_unknown_backbone_activation_names_the_key_the_user_wrote() -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone\.activation: unknown activation 'swish'"):
        summarize_source(LENET5, ["model.backbone.activation=swish"])


def test_format_table_blanks_counts_of_layers_without_parameters() -> None:
    text = format_table(summarize_source(LENET5).table)
    relu = next(line for line in text.splitlines() if "ReLU 1" in line)
    assert relu.rstrip().endswith("4704")
