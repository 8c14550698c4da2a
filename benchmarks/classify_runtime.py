"""Throughput of the classify model: onnxruntime vs PyTorch eager, pipeline vs model only.

Usage (from the repository root)::

    .venv/bin/python benchmarks/classify_runtime.py                 # demo model, 2 runs
    .venv/bin/python benchmarks/classify_runtime.py --run runs/demo --runs 3 --json out.json

Needs a trained classify run: ``RUN/run/weights/best.pt`` as written by
``vision-tasks demo --out RUN`` (the script runs the demo when it is missing). It exports
``RUN/model.onnx`` when absent and then runs ``vision-tasks benchmark`` ``--runs`` times
in this one process, printing each table (figures: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from vision_tasks.export.benchmark import run_benchmark
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime.providers import cpu_threads

from vision_tasks.cli import main as cli_main


def machine() -> str:
    """CPU model and usable cores, for the record."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {cpu_threads()} usable cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="demo folder (default runs/demo)")
    parser.add_argument("--runs", type=int, default=2, help="benchmark runs (default 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", help="also write every run's report to this JSON file")
    args = parser.parse_args(argv)

    run = Path(args.run)
    best = run / "run" / "weights" / "best.pt"
    if not best.is_file():
        print(f"{best} not found: training the demo model first", file=sys.stderr)
        if cli_main(["demo", "--out", str(run), "--quiet"]) != 0:
            return 1
    model = run / "model.onnx"
    if not model.is_file():
        print(export_checkpoint(best, model, check=True).summary())
    print(f"machine: {machine()}")
    reports = []
    for i in range(args.runs):
        report = run_benchmark(model, best, batch_size=args.batch_size)
        print(f"\nrun {i + 1}/{args.runs}\n{report.table()}")
        reports.append(report.to_dict())
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "runs": reports}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
