"""The run's results as a markdown section (appended to ``RESULTS-gpu.md``) and JSON
(appended to the list in ``RESULTS-gpu.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vision_tasks.fileio import atomic_write_text

RUNTIMES = ("torch_fp32", "torch_amp", "ort_fp32", "ort_fp32_iobind", "ort_fp16",
            "ort_fp16_iobind", "trt_fp16")
FAST = ("ort_fp32", "ort_fp32_iobind", "ort_fp16", "ort_fp16_iobind", "trt_fp16")


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |"
              for r in rows]]


def environment_md(env: dict[str, Any]) -> list[str]:
    return ["### Environment", "", *_table(["", ""], [[k, str(v)] for k, v in env.items()]), ""]


def training_md(section: dict[str, Any], gpu: bool) -> list[str]:
    out = ["### Training (trainer's own step on held batches; fp32 vs bf16 autocast, "
           "channels_last off / on)", ""]
    if not gpu:
        out.append("GPU figures: skipped: no GPU. CPU mode: the same code at the CPU mode's "
                   "size (tiny networks), to show the path runs; its timings mean nothing.")
        out.append("")
    rows = [[r["task"], f"{r['size']} px, batch {r['batch']}", r["amp"],
             "on" if r["channels_last"] else "off", f"{r['steps_per_s']:.2f}",
             f"{r['images_per_s']:.1f}", _f(r["peak_mib"], 0),
             f"{r['loss_after_n']:.4f} ({r['steps']} steps)"] for r in section.get("rows", [])]
    if rows:
        out += _table(["task", "input", "amp", "channels_last", "steps/s", "images/s",
                       "peak MiB", "loss after N"], rows)
    for task in section.get("skipped", []):
        out.append(f"- {task}: skipped: time budget spent")
    for task, error in section.get("errors", {}).items():
        out.append(f"- {task}: {error}")
    return [*out, ""]


def accuracy_md(section: dict[str, Any]) -> list[str]:
    tol = section.get("tolerance", {})
    out = ["### `val` of each exported file vs its checkpoint", "",
           f"Held to: the checkpoint's metric minus {100 * tol.get('fp32', 0):.1f} point (fp32) "
           f"/ {100 * tol.get('fp16', 0):.1f} point (fp16).", ""]
    rows = [[r["task"], r["precision"], r["runtime"], r["metric"], f"{r['checkpoint']:.4f}",
             f"{r['value']:.4f}" if "value" in r else "-",
             f"{r['diff']:+.4f}" if "diff" in r else "-",
             _f(r["ok"]) if "ok" in r else "-", r.get("providers") or r["status"]]
            for r in section.get("rows", [])]
    return [*out, *_table(["task", "file", "runtime", "metric", "checkpoint", "file's",
                           "diff", "ok", "providers / status"], rows), ""]


def speed_md(rows: list[dict[str, Any]], gpu: bool) -> list[str]:
    out = ["### Model only, images/s (uint8 batch in host memory -> outputs in host memory)", ""]
    if not gpu:
        out += ["CPU mode: tiny networks on the CPU provider, to show every path runs; these "
                "figures are no speed claim.", ""]
    groups: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    skipped = []
    for r in rows:
        if r["runtime"] == "all":
            skipped.append(f"- {r['task']} {r['size']} px: {r['status']}")
            continue
        groups.setdefault((r["task"], r["size"], r["batch"]), {})[r["runtime"]] = r
    table = []
    for (task, size, batch), by in groups.items():
        cells: list[Any] = [task, f"{size} px", str(batch)]
        for name in RUNTIMES:
            r = by.get(name)
            cells.append("-" if r is None else f"{r['images_per_s']:.0f}"
                         if "images_per_s" in r else r["status"])
        fast = [by[n]["images_per_s"] for n in FAST if n in by and "images_per_s" in by[n]]
        amp = by.get("torch_amp", {}).get("images_per_s")
        cells.append(f"{max(fast) / amp:.2f}x" if fast and amp else "-")
        table.append(cells)
    out += _table(["task", "input", "batch", *RUNTIMES, "best onnxruntime / torch AMP"], table)
    out += skipped
    staging = {(r["task"], r["size"], r["runtime"]): r["staging"] for r in rows if "staging" in r}
    for (task, size, runtime), note in staging.items():
        out.append(f"- {runtime} {task} {size} px: uint8 batch staging: {note}")
    builds = {(r["task"], r["size"]): r for r in rows if "engine_build_s" in r}
    for (task, size), r in builds.items():
        out.append(f"- TensorRT {task} {size} px: engine build {r['engine_build_s']:.1f} s "
                   f"(cold cache), load from cache {r['engine_load_s']:.1f} s")
    return [*out, ""]


def pipeline_md(section: dict[str, Any]) -> list[str]:
    out = ["### JPEG pipeline vs model only (`vision-tasks benchmark`, fp16 file)", ""]
    if "status" in section:
        return [*out, f"- {section['status']}", ""]
    m = section["measurements"]
    ratio = section["ratios"]["pipeline_over_model_only"]
    out += [f"- {section['task']} {section['input_size'][0]} px, batch {section['batch_size']}, "
            f"{section['provider']}, {section['cpu_cores']} CPU cores, "
            f"{section['workers']} decode workers, {section['lanes']} lanes",
            f"- images: {section['pipeline_images']}",
            *[f"- {name}: {v['images_per_s']:.1f} images/s" for name, v in m.items()],
            f"- pipeline / best model only: {100 * ratio:.1f} %" if ratio else "- ratio: -"]
    return [*out, ""]


def section_md(results: dict[str, Any]) -> str:
    gpu = results["mode"] == "gpu"
    title = (f"## {results['started_utc']}: {results['device']} "
             f"({'GPU' if gpu else results['mode'].upper() + ' mode, no GPU'})")
    lines = [title, "", f"- command: `{results['command']}`",
             f"- took {results['seconds']:.0f} s; load average {results['load_before']} before, "
             f"{results['load_after']} after", ""]
    lines += environment_md(results["environment"])
    models = results.get("models", [])
    if models:
        lines += ["### Models made for the check", "",
                  *_table(["task", "input", "train s", "export s"],
                          [[m["task"], f"{m['size']} px", m["train_seconds"], m["export_seconds"]]
                           for m in models]), ""]
    for error in results.get("errors", []):
        lines.append(f"- error: {error}")
    lines += training_md(results.get("training", {}), gpu)
    lines += accuracy_md(results.get("accuracy", {}))
    lines += speed_md(results.get("speed", []), gpu)
    lines += pipeline_md(results.get("pipeline", {"status": "not run"}))
    return "\n".join(lines) + "\n"


def append(results: dict[str, Any], markdown: Path, json_path: Path) -> None:
    """Append the section to ``markdown`` and the results to the list in ``json_path``."""
    md = markdown.read_text() if markdown.is_file() else (
        "# GPU check results\n\nOne section per run of `benchmarks/gpu_check.py` (newest last); "
        "the JSON of every run is in `RESULTS-gpu.json`.\n\n")
    atomic_write_text(markdown, md + "\n" + section_md(results))
    runs = json.loads(json_path.read_text()) if json_path.is_file() else []
    runs.append(results)
    atomic_write_text(json_path, json.dumps(runs, indent=1, default=str) + "\n")
