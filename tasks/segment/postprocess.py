"""Masks of the kept detections, assembled inside the graph.

After the detector's fixed-K post-processing (:func:`vision_tasks.tasks.detect.postprocess.
detections_fixed_k`, asked for each detection's point index), each detection's ``P``
coefficients are gathered from its point and multiplied with its image's prototypes:
``[N, K, P] @ [N, P, Hm*Wm]``, a sigmoid, and a crop to the detection's box (a prototype
pixel belongs to the box when its centre does). Empty rows have zero boxes, so their masks
are zero too. Every step is batched and traceable; the output is the contract's ``masks``
``[N, K, Hm, Wm]`` float32 probabilities in the input frame.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vision_tasks.grid import cell_centres, centre_inside


def box_crop(boxes: Tensor, height: int, width: int, stride: float) -> Tensor:
    """float ``[..., H, W]`` of 1 where a stride-``stride`` grid cell's centre lies in the box.

    Args:
        boxes: ``[..., 4]`` ``(x1, y1, x2, y2)`` input pixels.
        height, width: the grid (e.g. the prototypes' ``Hm, Wm``).
        stride: input pixels per grid cell.
    """
    xs = cell_centres(torch.arange(width, device=boxes.device, dtype=boxes.dtype), stride)
    ys = cell_centres(torch.arange(height, device=boxes.device, dtype=boxes.dtype), stride)
    x1, y1, x2, y2 = (boxes[..., i, None] for i in range(4))
    in_x = centre_inside(xs, x1, x2)  # [..., W]
    in_y = centre_inside(ys, y1, y2)  # [..., H]
    return (in_y[..., :, None] & in_x[..., None, :]).to(boxes.dtype)


def assemble_masks(coef: Tensor, protos: Tensor, point_index: Tensor, boxes: Tensor,
                   stride: float) -> Tensor:
    """Mask probabilities of the kept detections.

    Args:
        coef: float ``[N, A, P]`` coefficients of every point.
        protos: float ``[N, P, Hm, Wm]`` prototypes.
        point_index: int64 ``[N, K]`` the point of each detection.
        boxes: float ``[N, K, 4]`` the detections' boxes, input pixels (zero rows: empty).
        stride: input pixels per prototype pixel.

    Returns:
        float32 ``[N, K, Hm, Wm]``, zero outside each box and for empty rows.
    """
    p, hm, wm = protos.shape[1], protos.shape[2], protos.shape[3]
    picked = coef.gather(1, point_index[..., None].expand(-1, -1, p))  # [N, K, P]
    logits = torch.matmul(picked.float(), protos.float().flatten(2))  # [N, K, Hm*Wm]
    masks = logits.sigmoid().reshape(logits.shape[0], logits.shape[1], hm, wm)
    return masks * box_crop(boxes.float(), hm, wm, float(stride))
