"""`vision-tasks filters`: the first conv layer's filters and activation maps as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.engine.checkpoint import model_from_checkpoint
from vision_tasks.imaging import letterbox, load_image
from vision_tasks.inspect.filters import (
    FILTER_CELL,
    GAP,
    MAP_CELL,
    filters_to_tiles,
    first_conv_layer,
    maps_to_tiles,
    tile_grid,
    upscale_factor,
)
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task


def grid_size(n: int, tile: int) -> tuple[int, int]:
    """(width, height) of a grid of n square tiles, as the module docstring states."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return cols * tile + (cols + 1) * GAP, rows * tile + (rows + 1) * GAP


@pytest.fixture(scope="module")
def an_image(tiny_classify_data: Path) -> Path:
    return sorted((tiny_classify_data / "val").rglob("*.png"))[0]


def test_filters_command_writes_three_pngs_of_the_grid_size(tiny_classify_run, an_image: Path,
                                                            tmp_path: Path, capsys) -> None:
    out = tmp_path / "vis"
    assert main(["filters", str(tiny_classify_run.best), str(an_image), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    model, cfg, _, _ = model_from_checkpoint(tiny_classify_run.best)
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    n, size = conv.out_channels, cfg.data.image_size  # the tiny model: 4 filters of 3x3x3, 32 px
    f = conv.kernel_size[0]
    expected = {
        "filters.png": grid_size(n, f * upscale_factor(f, FILTER_CELL)),
        "activations.png": grid_size(n, size * upscale_factor(size, MAP_CELL)),  # 'same' padding
        "input.png": grid_size(1, size * upscale_factor(size, MAP_CELL)),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected), "no temporary files left"
    for name, (width, height) in expected.items():
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.mode == "RGB" and png.size == (width, height), name
        assert name in printed
    assert f"{n} filters" in printed and "3x3x3, RGB" in printed


def test_a_users_file_of_the_same_name_is_kept_unless_overwrite(tiny_classify_run, an_image,
                                                                tmp_path: Path, capsys) -> None:
    args = ["filters", str(tiny_classify_run.best), str(an_image), "--out", str(tmp_path)]
    assert main(args) == 0
    assert main(args) == 0  # its own earlier drawings are replaced
    mine = tmp_path / "activations.png"
    Image.new("RGB", (5, 5)).save(mine)  # a user's image of that name
    before = mine.read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "activations.png: exists and was not drawn by vision-tasks filters" in err
    assert mine.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0 and Image.open(mine).size != (5, 5)


def test_input_png_is_the_letterboxed_image_upscaled_with_nearest(tiny_classify_run, an_image,
                                                                  tmp_path: Path) -> None:
    main(["filters", str(tiny_classify_run.best), str(an_image), "--out", str(tmp_path)])
    size = 32
    k = upscale_factor(size, MAP_CELL)
    seen, _ = letterbox(load_image(an_image), size)
    png = np.asarray(Image.open(tmp_path / "input.png"))
    assert np.array_equal(png[GAP:GAP + size * k:k, GAP:GAP + size * k:k], seen)


def test_activation_maps_are_the_first_blocks_output_after_its_activation(tiny_classify_run,
                                                                          an_image) -> None:
    model, cfg, _, _ = model_from_checkpoint(tiny_classify_run.best)
    seen, _ = letterbox(load_image(an_image), cfg.data.image_size)
    image = torch.from_numpy(seen.transpose(2, 0, 1).copy())[None].float()
    layer = first_conv_layer(model, image)
    assert layer.chain == ["Conv2d", "BatchNorm2d", "ReLU"]
    with torch.no_grad():
        expected = model.backbone.stages[0][0](model.normalize(image))[0]
    assert torch.allclose(layer.maps, expected) and layer.maps.min() >= 0
    assert torch.equal(layer.weight, model.backbone.stages[0][0][0].weight)


def test_maxout_gives_half_as_many_maps_as_filters() -> None:
    cfg = load_config(None, ["model.backbone.name=lenet5", "model.backbone.activation=maxout",
                             "data.image_size=32"], base={"task": "classify"})
    model = build_model(cfg, get_task("classify"), 3, load_pretrained=False)
    layer = first_conv_layer(model, torch.full((1, 3, 32, 32), 100.0))
    assert layer.chain == ["Conv2d", "Maxout"]
    assert layer.weight.shape == (12, 3, 5, 5) and layer.maps.shape == (6, 28, 28)


def test_each_filter_is_scaled_on_its_own_to_the_full_range() -> None:
    weight = torch.stack([torch.linspace(-1, 1, 27).view(3, 3, 3),
                          torch.linspace(0, 0.01, 27).view(3, 3, 3), torch.ones(3, 3, 3)])
    tiles = filters_to_tiles(weight)
    assert tiles.shape == (3, 3, 3, 3) and tiles.dtype == np.uint8
    assert (tiles[0].min(), tiles[0].max()) == (0, 255) == (tiles[1].min(), tiles[1].max())
    assert np.all(tiles[2] == 128)  # a constant filter is mid-grey
    grey = filters_to_tiles(torch.randn(2, 6, 3, 3))
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_maps_share_one_colour_scale_and_grid_geometry_is_exact() -> None:
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 2.0), torch.ones(4, 4)])
    tiles, lo, hi = maps_to_tiles(maps)
    assert (lo, hi) == (0.0, 2.0) and tiles.shape == (3, 4, 4, 3)
    assert not np.array_equal(tiles[0], tiles[1]) and not np.array_equal(tiles[1], tiles[2])
    grid = tile_grid(tiles, factor=3)
    assert grid.shape[1::-1] == grid_size(3, 12)
    assert np.array_equal(grid[GAP:GAP + 12:3, GAP:GAP + 12:3], tiles[0])
    assert np.all(grid[:GAP] == 255)


def test_missing_image_or_checkpoint_is_a_one_line_error_naming_it(tiny_classify_run, an_image,
                                                                   tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.png"
    assert main(["filters", str(tiny_classify_run.best), str(missing), "--out", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err
    missing = tmp_path / "nope.pt"
    assert main(["filters", str(missing), str(an_image), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
