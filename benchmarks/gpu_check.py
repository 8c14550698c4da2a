"""The GPU check (issue 30): one command that measures what the product's GPU claims rest
on, and appends a section to ``benchmarks/RESULTS-gpu.md`` (JSON: ``RESULTS-gpu.json``).

    .venv/bin/python benchmarks/gpu_check.py            # GPU when one is visible, else CPU mode
    .venv/bin/python benchmarks/gpu_check.py --smoke    # CI: tiny, under a minute

Sections (details in each module of ``benchmarks/gpu_check/``):

1. environment: GPU, driver, CUDA, torch, onnxruntime and its providers, CPU cores, load;
2. models: a synthetic set per task, a short ``vision-tasks train`` of ``configs/<task>.yaml``,
   export to fp32 and fp16 (the lent machine has nothing else);
3. ``val`` of each file on CUDA and on TensorRT (nodes it cannot take left to CUDA) against
   its checkpoint, within 0.5 point (fp32) / 1 point (fp16);
4. model-only images/s of detect and segment at 128 and 640 px, batch 1 and 32: PyTorch
   eager fp32 / AMP bf16, onnxruntime CUDA fp32 / fp16 with and without I/O binding,
   TensorRT fp16 (engine cache; its build time apart);
5. the JPEG pipeline (coco128 repeated to 2048 images, or synthetic JPEGs where it is
   absent) against model only, with the CPU cores it had;
6. training: steps/s, peak memory and loss after N steps per task at 320 px, fp32 vs AMP
   bf16, channels_last off / on.

They run in the order models, 4, 3 on CUDA, 5, 3 on TensorRT, 6 (the headline first, the
slow TensorRT engine builds and the training study last). The whole run keeps to a time budget (``--budget``; GPU default 450 s, so the command ends
within 8 minutes on one H100 / H200): each section has a share and what does not fit is
listed as "skipped: time budget spent". Without a GPU it runs the CPU mode (the same code at
small sizes, under 2 minutes) and every GPU-only measurement says "skipped: no GPU".
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import accuracy, env, models, report, speed, training  # noqa: E402
from gpu_check.plan import NO_GPU, NO_TIME, PLANS, Budget, Plan  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
COCO128 = Path("/work/shared/data/coco128/images")
SHARES = {"models": 0.25, "speed": 0.62, "accuracy": 0.70, "pipeline": 0.78,
          "tensorrt_accuracy": 0.88, "training": 0.95}
"""Fractions of the budget by which each part must have started its last unit (a started
unit finishes), in the order they run: the speed figures (the headline) first, the slow
TensorRT engine builds of the accuracy check and the training study last."""


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def run(plan: Plan, work: Path, gpu: bool, images: Path | None) -> dict[str, Any]:
    """Every section of ``plan``; a section's failure is recorded and the next one runs."""
    budget = Budget(plan.budget_s)
    device = "cuda" if gpu else "cpu"

    def by(part: str) -> float:
        return SHARES[part] * budget.total

    def step(name: str) -> None:
        print(f"gpu_check: {name} done at {budget.elapsed():.0f} s", file=sys.stderr)

    results: dict[str, Any] = {"environment": env.environment(), "plan": plan.to_dict(),
                               "errors": [], "speed": [], "pipeline": {"status": NO_TIME}}
    made: list[models.Made] = []
    for task in plan.tasks:  # models for the accuracy section (and speed at that size)
        if made and budget.elapsed() > by("models"):
            results["errors"].append(f"model {task}: {NO_TIME}")
            continue
        try:
            made.append(models.make(task, plan.model_size, work, plan, device))
        except Exception as err:
            results["errors"].append(f"model {task}: {_error(err)}")
            traceback.print_exc()
    results["models"] = [{k: v for k, v in asdict(m).items() if not isinstance(v, Path)}
                         for m in made]
    step("models")
    for task in plan.speed_tasks:
        for size in plan.speed_sizes:
            if budget.elapsed() > by("speed"):
                results["speed"].append({"task": task, "size": size, "batch": "-",
                                         "runtime": "all", "status": NO_TIME})
                continue
            try:
                m = next((m for m in made if m.task == task and m.size == size), None) or \
                    models.make(task, size, work, plan, device, 8, 4, 1)
                results["speed"] += speed.model_only(m, plan, gpu, budget, by("speed"))
            except Exception as err:
                results["errors"].append(f"speed {task} {size}: {_error(err)}")
                traceback.print_exc()
    step("speed")
    scratch = work / "val"
    rows: list[dict[str, Any]] = []
    try:
        reference = accuracy.checkpoint_metrics(made, gpu, scratch)
        first = ("cuda",) if gpu else ("cpu", "cuda")
        rows = accuracy.accuracy_rows(made, first, reference, gpu, budget, by("accuracy"), scratch)
    except Exception as err:
        reference = {}
        results["errors"].append(f"accuracy: {_error(err)}")
        traceback.print_exc()
    step("accuracy (checkpoints, CUDA)")
    if any(m.task == "detect" for m in made) and budget.elapsed() < by("pipeline"):
        try:
            folder = str(images) if images else speed.synthetic_jpegs(work / "jpegs")
            big = max(plan.speed_sizes)
            m = next((m for m in made if m.task == "detect" and m.size == big), None) or \
                models.make("detect", big, work, plan, device, 8, 4, 1)
            results["pipeline"] = speed.pipeline(m, folder, plan.pipeline_images, gpu,
                                                 plan.speed_repeats, max(plan.speed_batches))
            results["pipeline"]["images_source"] = "coco128" if images else "synthetic JPEGs"
        except Exception as err:
            results["pipeline"] = {"status": f"error: {_error(err)}"}
            traceback.print_exc()
    step("pipeline")
    if reference:
        rows += accuracy.accuracy_rows(made, ("tensorrt",), reference, gpu, budget,
                                       by("tensorrt_accuracy"), scratch)
    results["accuracy"] = {"rows": rows, "tolerance": accuracy.TOLERANCE}
    step("accuracy (TensorRT)")
    try:
        results["training"] = training.training_section(plan, work, torch.device(device), budget,
                                                        by("training"))
    except Exception as err:
        results["training"] = {"errors": {"all": _error(err)}}
        traceback.print_exc()
    if not gpu:
        results["training"]["gpu"] = NO_GPU
    step("training")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the smallest CPU run (CI)")
    parser.add_argument("--cpu", action="store_true", help="the CPU mode even with a GPU")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default: the mode's: GPU 450, CPU 110, "
                             "smoke 300)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for data, runs and files (default: a temporary one)")
    parser.add_argument("--images", type=Path, default=COCO128,
                        help="JPEGs of the pipeline section (default coco128; synthetic JPEGs "
                             "when absent)")
    parser.add_argument("--report", type=Path, default=BENCHMARKS / "RESULTS-gpu.md",
                        help="markdown to append to (JSON beside it, .json)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's on a GPU; 1 in the CPU modes, "
                             "where tiny models on a shared machine thrash with more)")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available() and not (args.cpu or args.smoke)
    mode = "gpu" if gpu else "smoke" if args.smoke else "cpu"
    plan = PLANS[mode]
    if args.budget is not None:
        plan = Plan(**{**plan.to_dict(), "budget_s": args.budget})
    if args.threads or not gpu:  # CPU modes: one thread, unless told (see --threads)
        torch.set_num_threads(args.threads or 1)
    images = args.images if args.images.is_dir() and any(args.images.glob("*.jpg")) else None
    started = datetime.now(timezone.utc)
    load_before, t0 = _load(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run(plan, work, gpu, images)
    results.update(mode=mode, command=shlex.join([Path(sys.executable).name, *sys.argv]),
                   started_utc=started.strftime("%Y-%m-%d %H:%M UTC"),
                   device=results["environment"]["gpu"] if gpu else
                   f"CPU ({results['environment']['cpu_cores_usable']} cores)",
                   seconds=time.perf_counter() - t0, load_before=load_before, load_after=_load())
    report.append(results, args.report, args.report.with_suffix(".json"))
    print(report.section_md(results))
    print(f"gpu_check: {mode} mode, {results['seconds']:.0f} s; appended to {args.report}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
