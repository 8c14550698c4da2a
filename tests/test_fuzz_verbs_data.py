"""The verbs that read configs and data sets, fed a table of bad inputs (issue 28): train,
data synth, data convert, demo and track-eval. The rule is ``test_fuzz_verbs.py``'s: exit
status 2, one ``error:`` line naming the offending file or option, no traceback, no file
outside ``--out`` changed, and every case fails before any training or synthesis starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzzkit import make_bad_files, make_coco_splits
from test_fuzz_verbs import ids, run_case

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A tiny run on the synthetic set, so that a case that is not refused ends in seconds.
TINY = ["--set", "data.train={shapes}/train", "--set", "data.val={shapes}/val",
        "--set", "model.backbone.name=simple_cnn", "--set", "model.backbone.width=4",
        "--set", "model.backbone.depths=[1, 1, 1]", "--set", "data.image_size=32",
        "--set", "data.workers=0", "--set", "train.epochs=1", "--quiet"]


def _train(config: str, *extra: str, out: str = "{out}") -> list[str]:
    return ["train", config, "--out", out, *TINY, *extra]


TRAIN = [
    (["train", "{missing}", "--out", "{out}"], "{missing}"),
    (["train", "{dir}", "--out", "{out}"], "{dir}"),
    (["train", "{empty_yaml}", "--out", "{out}"], "{empty_yaml}"),
    (["train", "{bad_yaml}", "--out", "{out}"], "{bad_yaml}"),
    (["train", "{list_yaml}", "--out", "{out}"], "{list_yaml}"),
    (["train", "{scalar_yaml}", "--out", "{out}"], "{scalar_yaml}"),
    (["train", "{binary_yaml}", "--out", "{out}"], "{binary_yaml}"),
    (["train", "{png}", "--out", "{out}"], "{png}"),
    (["train", "{classify_pt}", "--out", "{out}"], "{classify_pt}"),
    (_train("{typo_yaml}"), "trian"),
    (["train", "{string_number_yaml}", "--out", "{out}"], "train.epochs"),
    (_train("{list_section_yaml}"), "train"),
    (_train("{unknown_task_yaml}"), "clasify"),
    (["train", "{negative_yaml}", "--out", "{out}"], "data.image_size"),
    (["train", "{absurd_yaml}", "--out", "{out}"], "data.image_size"),
    (_train("classify", "--set", "train.epocs=2"), "train.epocs"),
    (_train("classify", "--set", "train.epochs=abc"), "train.epochs"),
    (_train("classify", "--set", "train.epochs=-5"), "train.epochs"),
    (_train("classify", "--set", "train.batch_size=0"), "train.batch_size"),
    (_train("classify", "--set", "train.lr=-1"), "train.lr"),
    (_train("classify", "--set", "train.lr=.nan"), "train.lr"),
    (_train("classify", "--set", "train.warmup_epochs=-3"), "train.warmup_epochs"),
    (_train("classify", "--set", "train.lr_final=-1"), "train.lr_final"),
    (_train("classify", "--set", "train.momentum=-1"), "train.momentum"),
    (_train("classify", "--set", "train.ema_decay=5"), "train.ema_decay"),
    (_train("classify", "--set", "train.grad_clip=-1"), "train.grad_clip"),
    (_train("classify", "--set", "model.backbone.depths=[1, -1, 1]"), "model.backbone.depths"),
    (_train("classify", "--set", "model.head.dropout=2"), "model.head.dropout"),
    (_train("classify", "--set", "model.head.hidden=[-5]"), "model.head.hidden"),
    (_train("classify", "--set", "loss.label_smoothing=1.5"), "loss.label_smoothing"),
    (_train("detect", "--set", "model.head.iou_threshold=3"), "model.head.iou_threshold"),
    (_train("detect", "--set", "loss.box=-1"), "loss.box"),
    (_train("classify", "--set", "data.image_size=100000"), "data.image_size"),
    (_train("classify", "--set", "data.workers=-1"), "data.workers"),
    (_train("classify", "--set", "model.backbone.depths=deep"), "model.backbone.depths"),
    (_train("classify", "--set", "model.backbone.name=resnet9000"), "resnet9000"),
    (_train("classify", "--set", "train.epochs"), "train.epochs"),
    (_train("classify", "--set", "train=3"), "train"),
    (_train("classify", "--set", "data.train={missing_png}"), "{missing_png}"),
    (_train("classify", "--set", "data.train={file}"), "{file}"),
    (_train("classify", "--set", "data.train={empty_png}"), "{empty_png}"),
    # a COCO split read as an ImageFolder of one class, "images": val's classes are unknown
    (_train("classify", "--set", "data.train={coco}/train"), "data.val"),
    (_train("detect", "--set", "data.train={shapes}/train"), "data.train"),
    (_train("classify", "--set", "train.device=tpu"), "tpu"),
    (_train("classify", out="{file}/run"), "{file}"),
    (["train", "classify", "--out", "{out}", "--nproc", "0"], "--nproc"),
    (["train", "--out", "{out}", "--resume"], "{out}"),
    (["train", "--out", "{dir}", "--resume"], "{dir}"),
    (["train", "--out", "{truncated_run}", "--resume"], "{truncated_run}/weights/last.pt"),
    (["train", "--out", "{stateless_run}", "--resume"], "{stateless_run}/weights/last.pt"),
    (["train", "classify", "--out", "{out}", "--resume", "--set", "train.epochs=2"], "--set"),
    (["train", "--out", "{out}"], "CONFIG"),
]

SYNTH = [
    (["data", "synth", "clasify", "{out}", "--train", "4", "--val", "2"], "clasify"),
    (["data", "synth", "classify", "{file}", "--train", "4", "--val", "2"], "{file}"),
    (["data", "synth", "classify", "{file}/set", "--train", "4", "--val", "2"], "{file}"),
    (["data", "synth", "classify", "{dir}", "--train", "4", "--val", "2"], "{dir}"),
    (["data", "synth", "classify", "{out}", "--train", "x"], "--train"),
    (["data", "synth", "classify", "{out}", "--style", "odd"], "--style"),
    (["data", "synth", "track", "{out}", "--train", "1", "--size", "8"], "--size"),
]

CONVERT = [
    (["data", "convert", "{missing}", "{out}"], "{missing}"),
    (["data", "convert", "{dir}", "{out}"], "{dir}"),
    (["data", "convert", "{png}", "{out}"], "{png}"),
    (["data", "convert", "{empty_yaml}", "{out}"], "{empty_yaml}"),
    (["data", "convert", "{bad_yaml}", "{out}"], "{bad_yaml}"),
    (["data", "convert", "{list_yaml}", "{out}"], "{list_yaml}"),
    (["data", "convert", "{binary_yaml}", "{out}"], "{binary_yaml}"),
    (["data", "convert", "{yolo_missing}", "{out}"], "{yolo_missing}"),
    (["data", "convert", "{yolo_names}", "{out}"], "{yolo_names}"),
    (["data", "convert", "{coco}", "{file}/set"], "{file}"),
    (["data", "convert", "{coco}", "{file}"], "{file}"),
    (["data", "convert", "{coco}", "{coco}/train"], "{coco}/train"),
    *[(["data", "convert", f"{{coco_{name}}}", "{out}"], f"{{coco_{name}}}")
      for name in ("malformed", "list", "binary", "no_images", "images_dict", "string_bbox",
                   "bbox_short", "string_ids")],
]

DEMO = [
    (["demo", "--task", "clasify", "--out", "{out}", "--quiet"], "clasify"),
    (["demo", "--out", "{out}", "--quiet", "--set", "train.epocs=1"], "train.epocs"),
    (["demo", "--out", "{out}", "--quiet", "--set", "train.epochs=-1"], "train.epochs"),
    (["demo", "--out", "{out}", "--quiet", "--set", "oops"], "oops"),
    (["demo", "--out", "{file}/demo", "--quiet"], "{file}"),
    (["demo", "--out", "{file}", "--quiet"], "{file}"),
]

TRACK_EVAL = [
    (["track-eval", "{missing}", "{mot}/results"], "{missing}"),
    (["track-eval", "{mot}/gt", "{missing}"], "{missing}"),
    (["track-eval", "{file}", "{mot}/results"], "{file}"),
    (["track-eval", "{mot}/gt", "{file}"], "{file}"),
    (["track-eval", "{mot}/gt", "{mot}/results", "--json", "{file}/m.json"], "{file}"),
    (["track-eval", "{mot}/gt", "{mot}/results", "--json", "{dir}"], "{dir}"),
    (["track-eval", "{mot}/gt", "{mot}/results", "--json", "{png}"], "{png}"),
    *[(["track-eval", "{mot}/gt", f"{{mot}}/{name}"], f"{{mot}}/{name}/seq.txt")
      for name in ("words", "binary", "inf", "short")],
    (["track-eval", "{mot}/badgt", "{mot}/results"], "{mot}/badgt/seq/gt/gt.txt"),
]

COCO = {  # annotations.json of each bad COCO set (a bytes value is written as it is)
    "malformed": b'{"images": [',
    "list": [1, 2, 3],
    "binary": b'{"images": "\xff\xfe"}',
    "no_images": {"annotations": [], "categories": []},
    "images_dict": {"images": {"id": 1}, "annotations": [], "categories": []},
    "string_bbox": {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": "wide"}],
                    "categories": [{"id": 1, "name": "thing"}]},
    "bbox_short": {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}],
                   "categories": [{"id": 1, "name": "thing"}]},
    "string_ids": {"images": [{"id": "one", "file_name": "a.png", "width": "wide",
                               "height": 32}],
                   "annotations": [], "categories": [{"id": 1, "name": "thing"}]},
}

MOT = {  # a results file <seq>.txt of each bad kind
    "words": b"frame,id,x,y,w,h\n",
    "binary": b"1,1,\xff\xfe,0,4,4,1\n",
    "inf": b"inf,1,0,0,4,4,1\n",
    "short": b"1,1,0\n",
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """make_bad_files' inputs, plus bad YOLO, COCO and MOTChallenge sets."""
    root = tmp_path_factory.mktemp("inputs")
    paths = make_bad_files(root)
    yolo = root / "yolo"
    (yolo / "images" / "train").mkdir(parents=True)
    paths["yolo_missing"] = yolo / "missing.yaml"
    paths["yolo_missing"].write_text(f"path: {yolo}\ntrain: nowhere/train\nnames: [a]\n")
    paths["yolo_names"] = yolo / "names.yaml"
    paths["yolo_names"].write_text(f"path: {yolo}\ntrain: images/train\nnames: 7\n")
    for name, content in COCO.items():
        paths[f"coco_{name}"] = make_coco_splits(root / f"coco-{name}", content)
    mot = paths["mot"] = root / "mot"
    for gt, text in (("gt", b"1,1,0,0,4,4,1\n"), ("badgt", b"1,one,0,0,4,4,1\n")):
        (mot / gt / "seq" / "gt").mkdir(parents=True)
        (mot / gt / "seq" / "gt" / "gt.txt").write_bytes(text)
    for name, text in {"results": b"1,1,0,0,4,4,1\n", **MOT}.items():
        (mot / name).mkdir()
        (mot / name / "seq.txt").write_bytes(text)
    return paths


CASES = TRAIN + SYNTH + CONVERT + DEMO + TRACK_EVAL


@pytest.mark.parametrize(("argv", "names"), CASES, ids=ids(CASES))
def test_data_verbs_refuse_bad_inputs(argv, names, bad, tmp_path, capsys, monkeypatch) -> None:
    import vision_tasks.engine.trainer as trainer

    def no_training(*args, **kwargs):  # a case that reaches an epoch has not been refused
        raise AssertionError("training started on a bad input")

    monkeypatch.setattr(trainer, "train_one_epoch", no_training)
    run_case(argv, names, bad, tmp_path, capsys, monkeypatch)


def test_the_bad_sets_are_bad_only_where_meant(bad, tmp_path) -> None:
    """The tables' good halves are good: the MOT ground truth scores, COCO's splits read."""
    from vision_tasks.cli import main

    assert main(["track-eval", str(bad["mot"] / "gt"), str(bad["mot"] / "results"),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["combined"]["MOTA"] == 1.0
    assert main(["track-eval", str(bad["mot"] / "gt"), str(bad["mot"] / "results"),
                 "--json", str(tmp_path / "m.json")]) == 0  # its own file is replaced
    assert main(["data", "convert", str(bad["coco"]), str(tmp_path / "yolo")]) == 0
