"""``vision-tasks filters``: what the first conv layer learned, and what it sees in an image.

Three PNGs, written atomically into the output folder:

- ``filters.png``: the first conv layer's filters ``[N, C, f, f]`` as a grid. Each filter
  is scaled on its own to 0..255 (its lowest weight black, its highest white), shown in
  RGB when it has 3 input channels (else the mean over its channels, in grey), and
  upscaled with nearest-neighbour so every weight is a visible square.
- ``activations.png``: that layer's maps for one image, after its batch norm and
  activation (the conv -> [BN] -> activation chain as it runs; after a maxout, N/2 maps
  for the conv's N filters), coloured with viridis on one scale shared by all maps, so a
  weak map looks weak.
- ``input.png``: the image as the model saw it: letterboxed to ``data.image_size`` with
  :func:`vision_tasks.imaging.letterbox`, exactly as in training and evaluation.

Grid geometry, for ``n`` tiles of ``t x t`` pixels upscaled ``k`` times: ``cols =
ceil(sqrt(n))``, ``rows = ceil(n / cols)``, ``GAP`` white pixels between tiles and around
them: width ``cols * t * k + (cols + 1) * GAP``, height ``rows * t * k + (rows + 1) * GAP``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor, nn

from vision_tasks.engine.checkpoint import model_from_checkpoint
from vision_tasks.errors import VisionTasksError
from vision_tasks.fileio import atomic_path
from vision_tasks.imaging import letterbox, load_image
from vision_tasks.inspect.layer_table import ACTIVATION_LAYERS

GAP = 2
FILTER_CELL = 48  # filters are upscaled to at least this many pixels a side
MAP_CELL = 96  # activation maps and the input likewise
AFTER_CONV = (nn.BatchNorm2d, *ACTIVATION_LAYERS)


@dataclass(frozen=True)
class FirstLayer:
    """The first conv layer that runs, and its output for one image.

    ``weight``: the conv's filters ``[N, C, f, f]``; ``maps``: ``[M, H', W']``, the output
    of ``chain``'s last module (M = N, or N / 2 after a maxout).
    """

    name: str  # qualified module name of the conv
    chain: list[str]  # layer types that produced the maps, e.g. ["Conv2d", "BatchNorm2d", "ReLU"]
    weight: Tensor
    maps: Tensor


@dataclass(frozen=True)
class Drawing:
    """What :func:`draw_first_layer` wrote, and one line describing each file."""

    filters: Path
    activations: Path
    input: Path
    lines: list[str]


def first_conv_layer(model: nn.Module, image: Tensor) -> FirstLayer:
    """Run ``image`` (float ``[1, 3, H, W]``, RGB 0..255) through ``model`` and capture the
    first ``nn.Conv2d`` that runs with the batch norm and activation right after it."""
    chain: list[tuple[str, nn.Module, Tensor]] = []
    done = False

    def recorder(name: str):
        def hook(module: nn.Module, _args: tuple, output: object) -> None:
            nonlocal done
            if done or not isinstance(output, Tensor):
                return
            if not chain:
                if isinstance(module, nn.Conv2d):
                    chain.append((name, module, output.detach().clone()))
            elif isinstance(module, AFTER_CONV):
                chain.append((name, module, output.detach().clone()))
            else:
                done = True
        return hook

    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(recorder(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for handle in handles:
            handle.remove()
    if not chain:
        raise VisionTasksError("this model has no conv layer that runs: nothing to draw")
    name, conv, _ = chain[0]
    return FirstLayer(name, [type(m).__name__ for _, m, _ in chain],
                      conv.weight.detach().float().cpu(), chain[-1][2][0].float().cpu())


# ------------------------------------------------------------------ pictures


def filters_to_tiles(weight: Tensor) -> np.ndarray:
    """Filters ``[N, C, f, f]`` -> uint8 tiles ``[N, f, f, 3]``, each scaled on its own to
    0..255 (a constant filter is mid-grey). RGB for C == 3, else the channel mean in grey."""
    w = weight.float()
    w = w if w.shape[1] == 3 else w.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    flat = w.reshape(w.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1, 1) - lo)
    scaled = torch.where(span > 0, (w - lo) / span.clamp(min=1e-12), torch.full_like(w, 0.5))
    return (scaled * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def maps_to_tiles(maps: Tensor, colormap: str = "viridis") -> tuple[np.ndarray, float, float]:
    """Maps ``[M, H, W]`` -> uint8 RGB tiles ``[M, H, W, 3]`` on one shared scale; also
    returns the scale's ``(low, high)`` (all maps equal: the colormap's lowest colour)."""
    from matplotlib import colormaps

    values = maps.float().numpy()
    lo, hi = float(values.min()), float(values.max())
    unit = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    rgba = colormaps[colormap](unit)  # [M, H, W, 4] floats in 0..1
    return (rgba[..., :3] * 255).round().astype(np.uint8), lo, hi


def upscale_factor(size: int, target: int) -> int:
    """The smallest integer k >= 1 with ``size * k >= target``."""
    return max(1, math.ceil(target / max(size, 1)))


def tile_grid(tiles: np.ndarray, factor: int = 1, gap: int = GAP, background: int = 255) -> np.ndarray:
    """uint8 tiles ``[n, h, w, 3]`` -> one uint8 image ``[H, W, 3]``: each tile upscaled
    ``factor`` times (nearest), ``ceil(sqrt(n))`` columns, ``gap`` pixels around each."""
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or len(tiles) == 0:
        raise ValueError(f"expected uint8 tiles [n, h, w, 3] with n >= 1, got {tiles.shape}")
    big = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    n, h, w = big.shape[:3]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3), background,
                   dtype=np.uint8)
    for i, tile in enumerate(big):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        grid[y:y + h, x:x + w] = tile
    return grid


MARK = "vision-tasks filters"
"""The PNG ``Software`` text of the files this verb writes: how it knows its own earlier files
(replaced) from a user's of the same name (kept unless ``--overwrite``)."""


def save_png(image: np.ndarray, path: Path) -> None:
    """Write a uint8 ``[H, W, 3]`` image as PNG, atomically, marked as ours."""
    info = PngInfo()
    info.add_text("Software", MARK)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)


def _ours(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.info.get("Software") == MARK
    except (OSError, ValueError):
        return False


def check_outputs(files: list[Path], overwrite: bool) -> None:
    """Refuse to replace a file of a name this verb writes unless it wrote it (or
    ``overwrite``): one line naming the first such file."""
    for path in files:
        if path.is_dir() or (path.exists() and not overwrite and not _ours(path)):
            what = "is a folder" if path.is_dir() else "exists and was not drawn by vision-tasks filters"
            raise VisionTasksError(f"{path}: {what}; choose another --out"
                                   + ("" if path.is_dir() else ", or pass --overwrite to replace it"))


# ------------------------------------------------------------------ the verb


def draw_first_layer(checkpoint: str | Path, image_path: str | Path, out_dir: str | Path,
                     overwrite: bool = False) -> Drawing:
    """Write ``filters.png``, ``activations.png`` and ``input.png`` into ``out_dir`` (files of
    those names that an earlier run did not draw are kept unless ``overwrite``).

    Raises ``CheckpointError``/``ImageError`` (one line, naming the file) for a missing or
    unreadable checkpoint or image, ``VisionTasksError`` when ``out_dir`` is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VisionTasksError(f"--out {out}: is a file, not a folder; choose a folder")
    files = {name: out / f"{name}.png" for name in ("filters", "activations", "input")}
    check_outputs(list(files.values()), overwrite)
    original = load_image(image_path)  # ImageError naming the file when missing or corrupt
    model, cfg, _, _ = model_from_checkpoint(checkpoint)
    size = cfg.data.image_size
    seen, _ = letterbox(original, size)
    batch = torch.from_numpy(seen.transpose(2, 0, 1).copy())[None].float()
    layer = first_conv_layer(model, batch)

    n, c, kh, kw = layer.weight.shape
    k_filter = upscale_factor(max(kh, kw), FILTER_CELL)
    save_png(tile_grid(filters_to_tiles(layer.weight), k_filter), files["filters"])
    tiles, lo, hi = maps_to_tiles(layer.maps)
    m, mh, mw = layer.maps.shape
    k_map = upscale_factor(max(mh, mw), MAP_CELL)
    save_png(tile_grid(tiles, k_map), files["activations"])
    k_input = upscale_factor(size, MAP_CELL)
    save_png(tile_grid(seen[None], k_input), files["input"])
    colour = "RGB" if c == 3 else f"grey (mean of {c} channels)"
    chain = " -> ".join(layer.chain)
    lines = [
        f"{files['filters']}: {n} filters of {layer.name} ({kh}x{kw}x{c}, {colour}), each scaled "
        f"to 0..255, {k_filter}x upscaled",
        f"{files['activations']}: {m} maps of {mh}x{mw} after {chain} on {image_path}, viridis "
        f"from {lo:.3g} to {hi:.3g}, {k_map}x upscaled",
        f"{files['input']}: the {size}x{size} letterboxed input the model saw, {k_input}x upscaled",
    ]
    return Drawing(files["filters"], files["activations"], files["input"], lines)
