"""Every verb that reads a model, fed a table of bad inputs (issue 28): export, val, summary,
filters, compose, predict, benchmark and serve's startup. Each case must end with exit status
2, one ``error:`` line (at most two lines that are not progress) naming the offending file or
option, no traceback, and no file outside ``--out`` changed. The data verbs (train, data
synth/convert, demo, track-eval) are in ``test_fuzz_verbs_data.py``; the rule's helpers in
``fuzzkit.py``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzkit import check_failure, make_bad_files, tree_hash

from vision_tasks.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("inputs"))


def fill(text: str, paths: dict[str, Path]) -> str:
    """``text`` with each ``{name}`` of ``paths`` replaced by its path (other braces kept)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(paths[m[1]]) if m[1] in paths else m[0], text)


def run_case(argv: list[str], names: str, bad: dict[str, Path], tmp_path: Path, capsys,
             monkeypatch) -> str:
    """Run ``vision-tasks ARGV`` in-process in ``tmp_path`` (``{out}`` = tmp_path/out) and
    check the rule; returns the error line."""
    out = tmp_path / "out"
    paths = {**bad, "out": out, "tmp": tmp_path}
    monkeypatch.chdir(tmp_path)
    inputs = bad["png"].parent
    before = tree_hash(inputs), tree_hash(tmp_path, (out,))
    try:
        code = main([fill(a, paths) for a in argv])
    except SystemExit as exit_:  # the parser's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    line = check_failure(code, err, fill(names, paths))
    assert (tree_hash(inputs), tree_hash(tmp_path, (out,))) == before, "a file outside --out changed"
    return line


def ids(cases: list[tuple]) -> list[str]:
    return [f"{c[0][0]}-{c[0][1] if c[0][1].startswith('-') else ''}{i}" for i, c in enumerate(cases)]


EXPORT = [
    (["export", "{missing}", "--out", "{out}/m.onnx"], "{missing}"),
    (["export", "{dir}", "--out", "{out}/m.onnx"], "{dir}"),
    (["export", "{empty}", "--out", "{out}/m.onnx"], "{empty}"),
    (["export", "{truncated_pt}", "--out", "{out}/m.onnx"], "{truncated_pt}"),
    (["export", "{png_as_pt}", "--out", "{out}/m.onnx"], "{png_as_pt}"),
    (["export", "{onnx_as_pt}", "--out", "{out}/m.onnx"], "{onnx_as_pt}"),
    (["export", "{classify_onnx}", "--out", "{out}/m.onnx"], "{classify_onnx}"),
    (["export", "{text_pt}", "--out", "{out}/m.onnx"], "{text_pt}"),
    (["export", "{classify_pt}", "--out", "{file}/m.onnx"], "{file}"),
    (["export", "{classify_pt}", "--out", "{dir}"], "{dir}"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--opset", "-3"], "--opset"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--opset", "99"], "--opset"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--image-size", "-32"], "--image-size"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--image-size", "100000"],
     "--image-size"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--int8", "--calibration",
      "{missing_png}"], "{missing_png}"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--int8", "--calibration-images",
      "0"], "--calibration-images"),
    (["export", "{classify_pt}", "--out", "{out}/m.onnx", "--fp16", "--int8"], "--int8"),
]

SHAPES = ["--set", "data.val={shapes}/val"]
VAL = [
    (["val", "{missing}", "--out", "{out}"], "{missing}"),
    (["val", "{dir}", "--out", "{out}"], "{dir}"),
    (["val", "{empty}", "--out", "{out}"], "{empty}"),
    (["val", "{truncated_pt}", "--out", "{out}"], "{truncated_pt}"),
    (["val", "{png_as_pt}", "--out", "{out}"], "{png_as_pt}"),
    (["val", "{png}", "--out", "{out}"], "{png}"),
    (["val", "{pt_as_onnx}", "--out", "{out}"], "{pt_as_onnx}"),
    (["val", "{truncated_onnx}", "--out", "{out}"], "{truncated_onnx}"),
    (["val", "{classify_pt}", "--out", "{file}/m"], "{file}"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "data.val={missing_png}"],
     "{missing_png}"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "data.val={file}"], "{file}"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "data.vall=x"], "data.vall"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "train.batch_size=many"],
     "train.batch_size"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "noequals"], "noequals"),
    (["val", "{classify_pt}", "--out", "{out}", "--batch-size", "0", *SHAPES], "--batch-size"),
    (["val", "{classify_pt}", "--out", "{out}", "--batch-size", "-4", *SHAPES], "--batch-size"),
    (["val", "{classify_pt}", "--out", "{out}", "--device", "tpu", *SHAPES], "tpu"),
    (["val", "{classify_pt}", "--out", "{out}", "--set", "data.val={coco}/val"], "data.val"),
    (["val", "{detect_pt}", "--out", "{out}", "--set", "data.val={shapes}/val"], "data.val"),
]

SUMMARY = [
    (["summary", "{missing}"], "{missing}"),
    (["summary", "{dir}"], "{dir}"),
    (["summary", "{empty}"], "{empty}"),
    (["summary", "{truncated_pt}"], "{truncated_pt}"),
    (["summary", "{png_as_pt}"], "{png_as_pt}"),
    (["summary", "{png}"], "{png}"),
    (["summary", "{classify_onnx}"], "{classify_onnx}"),
    (["summary", "{empty_yaml}"], "{empty_yaml}"),
    (["summary", "{bad_yaml}"], "{bad_yaml}"),
    (["summary", "{list_yaml}"], "{list_yaml}"),
    (["summary", "{scalar_yaml}"], "{scalar_yaml}"),
    (["summary", "{binary_yaml}"], "{binary_yaml}"),
    (["summary", "{typo_yaml}"], "trian"),
    (["summary", "{string_number_yaml}"], "train.epochs"),
    (["summary", "{unknown_task_yaml}"], "clasify"),
    (["summary", "{list_section_yaml}"], "train"),
    (["summary", "{missing_base_yaml}"], "{missing_base_yaml}"),
    (["summary", "{classify_pt}", "--input-size", "-8", "32"], "--input-size"),
    (["summary", "{negative_yaml}"], "data.image_size"),
    (["summary", "classify", "--classes", "0"], "--classes"),
    (["summary", "classify", "--classes", "-3"], "--classes"),
    (["summary", "classify", "--set", "model.backbone.widht=4"], "model.backbone.widht"),
]

FILTERS = [
    (["filters", "{missing}", "{png}", "--out", "{out}"], "{missing}"),
    (["filters", "{png_as_pt}", "{png}", "--out", "{out}"], "{png_as_pt}"),
    (["filters", "{classify_onnx}", "{png}", "--out", "{out}"], "{classify_onnx}"),
    (["filters", "{truncated_pt}", "{png}", "--out", "{out}"], "{truncated_pt}"),
    (["filters", "{classify_pt}", "{missing_png}", "--out", "{out}"], "{missing_png}"),
    (["filters", "{classify_pt}", "{dir}", "--out", "{out}"], "{dir}"),
    (["filters", "{classify_pt}", "{empty_png}", "--out", "{out}"], "{empty_png}"),
    (["filters", "{classify_pt}", "{truncated_png}", "--out", "{out}"], "{truncated_png}"),
    (["filters", "{classify_pt}", "{classify_pt}", "--out", "{out}"], "{classify_pt}"),
    (["filters", "{classify_pt}", "{png}", "--out", "{file}/f"], "{file}"),
    (["filters", "{classify_pt}", "{png}", "--out", "{file}"], "{file}"),
]

TWO = ["{classify_pt}", "{classify_pt}"]  # one backbone: composable
COMPOSE = [
    (["compose", "{missing}", "{classify_pt}", "--out", "{out}/m.pt"], "{missing}"),
    (["compose", "{png_as_pt}", "{classify_pt}", "--out", "{out}/m.pt"], "{png_as_pt}"),
    (["compose", "{classify_onnx}", "{detect_pt}", "--out", "{out}/m.pt"], "{classify_onnx}"),
    (["compose", "{dir}", "{detect_pt}", "--out", "{out}/m.pt"], "{dir}"),
    (["compose", "{classify_pt}", "{truncated_pt}", "--out", "{out}/m.pt"], "{truncated_pt}"),
    (["compose", *TWO, "--out", "{file}/m.pt", "--names", "a,b"], "{file}"),
    (["compose", *TWO, "--out", "{dir}", "--names", "a,b"], "{dir}"),
    (["compose", *TWO, "--out", "{png}", "--names", "a,b"], "{png}"),
    (["compose", *TWO, "--out", "{out}/m.pt", "--names", "a"], "--names"),
    (["compose", *TWO, "--out", "{out}/m.pt", "--names", "a,a"], "a, a"),
    (["compose", *TWO, "--out", "{out}/m.pt", "--names", "a,b/c"], "b/c"),
    (["compose", "{classify_pt}", "{detect_pt}", "--out", "{out}/m.pt"], "{detect_pt}"),
    (["compose", "{multi_pt}", "{classify_pt}", "--out", "{out}/m.pt"], "{multi_pt}"),
]

PREDICT = [
    (["predict", "{missing}", "{png}", "--out", "{out}"], "{missing}"),
    (["predict", "{dir}", "{png}", "--out", "{out}"], "{dir}"),
    (["predict", "{empty_onnx}", "{png}", "--out", "{out}"], "{empty_onnx}"),
    (["predict", "{truncated_onnx}", "{png}", "--out", "{out}"], "{truncated_onnx}"),
    (["predict", "{png_as_onnx}", "{png}", "--out", "{out}"], "{png_as_onnx}"),
    (["predict", "{pt_as_onnx}", "{png}", "--out", "{out}"], "{pt_as_onnx}"),
    (["predict", "{classify_pt}", "{png}", "--out", "{out}"], "{classify_pt}"),
    (["predict", "{png}", "{png}", "--out", "{out}"], "{png}"),
    (["predict", "{classify_onnx}", "{missing_png}", "--out", "{out}"], "{missing_png}"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{file}/o"], "{file}"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{file}"], "{file}"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--batch-size", "0"],
     "--batch-size"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--batch-size", "-2"],
     "--batch-size"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--workers", "-1"], "--workers"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--threads", "-1"], "--threads"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--lanes", "0"], "--lanes"),
    (["predict", "{detect_onnx}", "{png}", "--out", "{out}", "--score-threshold", "2"],
     "--score-threshold"),
    (["predict", "{detect_onnx}", "{png}", "--out", "{out}", "--score-threshold", "-0.5"],
     "--score-threshold"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--vid-stride", "0"],
     "--vid-stride"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--reconnects", "-1"],
     "--reconnects"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--track"], "--track"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{out}", "--device", "tpu"], "tpu"),
    (["predict", "{classify_onnx}", "camera:x", "--out", "{out}"], "camera:x"),
    (["predict", "{classify_onnx}", "{empty_dir}", "--out", "{out}"], "{empty_dir}"),
    (["predict", "{classify_onnx}", "{png}", "--out", "{list_record}", "--resume"],
     "{list_record}/run.json"),
]

BENCHMARK = [
    (["benchmark", "{missing}"], "{missing}"),
    (["benchmark", "{dir}"], "{dir}"),
    (["benchmark", "{classify_pt}"], "{classify_pt}"),
    (["benchmark", "{png_as_onnx}"], "{png_as_onnx}"),
    (["benchmark", "{truncated_onnx}"], "{truncated_onnx}"),
    (["benchmark", "{classify_onnx}", "--checkpoint", "{missing}"], "{missing}"),
    (["benchmark", "{classify_onnx}", "--checkpoint", "{png_as_pt}"], "{png_as_pt}"),
    (["benchmark", "{classify_onnx}", "--checkpoint", "{detect_pt}"], "{detect_pt}"),
    (["benchmark", "{classify_onnx}", "--images", "{missing_png}"], "{missing_png}"),
    (["benchmark", "{classify_onnx}", "--batch-size", "0"], "--batch-size"),
    (["benchmark", "{classify_onnx}", "--repeats", "0"], "--repeats"),
    (["benchmark", "{classify_onnx}", "--pipeline-images", "-1"], "--pipeline-images"),
    (["benchmark", "{classify_onnx}", "--seconds", "-1"], "--seconds"),
    (["benchmark", "{classify_onnx}", "--threads", "0"], "--threads"),
]

SERVE = [
    (["serve", "{missing}", "--port", "0"], "{missing}"),
    (["serve", "{dir}", "--port", "0"], "{dir}"),
    (["serve", "{classify_pt}", "--port", "0"], "{classify_pt}"),
    (["serve", "{png_as_onnx}", "--port", "0"], "{png_as_onnx}"),
    (["serve", "{empty_onnx}", "--port", "0"], "{empty_onnx}"),
    (["serve", "{truncated_onnx}", "--port", "0"], "{truncated_onnx}"),
    (["serve", "bad name={classify_onnx}", "--port", "0"], "bad name"),
    (["serve", "a={classify_onnx}", "a={detect_onnx}", "--port", "0"], "a"),
    (["serve", "{classify_onnx}", "--port", "99999"], "--port"),
    (["serve", "{classify_onnx}", "--port", "-1"], "--port"),
    (["serve", "{classify_onnx}", "--port", "0", "--token-file", "{missing}"], "{missing}"),
    (["serve", "{classify_onnx}", "--port", "0", "--token-file", "{empty}"], "{empty}"),
    (["serve", "{classify_onnx}", "--port", "0", "--token-file", "{dir}"], "{dir}"),
    (["serve", "{classify_onnx}", "--port", "0", "--max-batch", "0"], "--max-batch"),
    (["serve", "{classify_onnx}", "--port", "0", "--cors", "not a url"], "--cors"),
    (["serve", "{classify_onnx}", "--port", "0", "--cors", "https://app.example.com/x"],
     "--cors"),
    (["serve", "{classify_onnx}", "--port", "0", "--host", "no.such.host.invalid"],
     "no.such.host.invalid"),
]


@pytest.mark.parametrize(("argv", "names"), EXPORT + VAL + SUMMARY + FILTERS + COMPOSE,
                         ids=ids(EXPORT + VAL + SUMMARY + FILTERS + COMPOSE))
def test_torch_verbs_refuse_bad_inputs(argv, names, bad, tmp_path, capsys, monkeypatch) -> None:
    run_case(argv, names, bad, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize(("argv", "names"), PREDICT + BENCHMARK, ids=ids(PREDICT + BENCHMARK))
def test_runtime_verbs_refuse_bad_inputs(argv, names, bad, tmp_path, capsys, monkeypatch) -> None:
    run_case(argv, names, bad, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize(("argv", "names"), SERVE, ids=ids(SERVE))
def test_serve_refuses_bad_inputs_before_it_listens(argv, names, bad, tmp_path, capsys,
                                                    monkeypatch) -> None:
    import vision_tasks.export.serve.commands as serve

    real_bind = serve._bind

    def bind_then_stop(host, port):  # a case that would serve fails here instead of hanging
        real_bind(host, port).close()
        raise AssertionError(f"serve would have listened on {host}:{port}")

    monkeypatch.setattr(serve, "_bind", bind_then_stop)
    run_case(argv, names, bad, tmp_path, capsys, monkeypatch)


NON_UTF8 = [
    (["export", "{bad}.pt", "--out", "{tmp}/o/m.onnx"]),
    (["predict", "{onnx}", "{bad}.png", "--out", "{tmp}/o"]),
    (["summary", "{bad}.yaml"]),
]


@pytest.mark.parametrize("argv", NON_UTF8, ids=[a[0] for a in NON_UTF8])
def test_file_names_that_are_not_utf8_are_named_not_a_traceback(argv, bad, tmp_path) -> None:
    """A name of bytes that are not UTF-8 (as another system may write it) is printed with
    escapes; it needs the real process (its stderr and argv decoding), so a subprocess."""
    import os

    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    paths = {"bad": Path(os.fsdecode(raw)), "tmp": tmp_path, "onnx": bad["classify_onnx"]}
    args = [os.fsencode(fill(a, paths)) for a in argv]
    before = tree_hash(tmp_path)
    run = subprocess.run([sys.executable, "-m", "vision_tasks", *args], capture_output=True,
                         timeout=180, cwd=tmp_path)
    err = run.stderr.decode("utf-8", "replace")
    check_failure(run.returncode, err, "caf")
    assert tree_hash(tmp_path, (tmp_path / "o",)) == before
