"""How much room the suite's "a tiny training learns" tests have, over initialisation seeds.

Usage (from the repository root)::

    .venv/bin/python benchmarks/test_margins.py --seeds 0 1 2 3 4

For each test that asserts a loss falls when a tiny model overfits one batch, the ratio
``last loss / first loss`` with torch seeds ``--seeds`` (the tests use seed 0), on one
thread, next to the bound the test asserts. A test holds on any CPU when every seed's
ratio is well under its bound: rounding differs between CPUs about as much as a change of
seed does to the trajectory. Figures: benchmarks/RESULTS.md, section "Issue 13".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import tiny_classify_config  # noqa: E402
from test_detect import tiny_detect_config  # noqa: E402
from test_segment import tiny_segment_config  # noqa: E402
from testkit import overfit  # noqa: E402

from vision_tasks.task_api import get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="margins-"))
    get_task("classify").synthesize(tmp / "classify", 40, 20, 32, seed=0)
    get_task("detect").synthesize(tmp / "detect", 16, 8, 64, seed=0)
    get_task("segment").synthesize(tmp / "segment", 16, 8, 64, seed=0)
    cases = []
    for opt in ("sgd", "momentum", "adagrad", "adam", "adamw"):
        lr = "train.lr=0.05" if opt in ("sgd", "momentum", "adagrad") else "train.lr=0.01"
        cfg = tiny_classify_config(tmp / "classify", f"train.optimizer={opt}", lr)
        cases.append((f"test_training: classify {opt}", cfg, "classify", 16, 40, None, 0.5))
    cases.append(("test_detect: detect loss", tiny_detect_config(tmp / "detect", "train.lr=0.005"),
                  "detect", 8, 30, None, 0.6))
    cases.append(("test_segment: mask loss",
                  tiny_segment_config(tmp / "segment", "train.lr=0.005"), "segment", 8, 40,
                  lambda loss, parts: float(parts["mask"]), 0.6))
    print("| test | bound | " + " | ".join(f"seed {s}" for s in args.seeds) + " | worst |")
    print("|---|---:|" + "---:|" * (len(args.seeds) + 1))
    for name, cfg, task, items, steps, value, bound in cases:
        ratios = []
        for seed in args.seeds:
            kwargs = {"value": value} if value else {}
            values, _, _ = overfit(cfg, get_task(task), items, steps, seed=seed, **kwargs)
            ratios.append(values[-1] / values[0])
        print(f"| {name} | < {bound} | " + " | ".join(f"{r:.3f}" for r in ratios) +
              f" | {max(ratios):.3f} |", flush=True)


if __name__ == "__main__":
    main()
