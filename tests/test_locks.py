"""One run per output (vision_tasks.locks): a second run into an output a live process holds
stops with one line naming the holder's pid (exit 2), for every verb that writes; a holder
that dies, however it dies, leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vision_tasks.cli import main
from vision_tasks.locks import LOCK_NAME, hold_output, lock_path_for

WAIT_S = 120  # generous: the holder imports the package on a loaded machine

HOLDER = """
import sys, time
from vision_tasks.locks import hold_output
with hold_output(sys.argv[1], is_file=sys.argv[2] == "file"):
    time.sleep(300)
"""


def _start_holder(target: Path, is_file: bool = False) -> subprocess.Popen:
    """A real second process that takes the product's lock on ``target`` and sleeps; returns
    once the lock file names its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target),
                             "file" if is_file else "folder"])
    lock = lock_path_for(target, is_file)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the holder ended early with status {proc.returncode}")
        if lock.is_file() and lock.read_text().strip() == str(proc.pid):
            return proc
        time.sleep(0.05)
    _stop(proc)
    raise AssertionError("the holder did not take the lock in time")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT_S)


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _argv(verb: str, out: Path, tmp_path: Path) -> tuple[list[str], Path, bool]:
    """The command line of ``verb`` writing to ``out``, the locked target, whether a file."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read: the lock comes first")
    return {
        "predict": (["predict", "m.onnx", str(tmp_path), "--out", str(out), "--quiet"], out, False),
        "predict --resume": (["predict", "m.onnx", str(tmp_path), "--out", str(out), "--resume"],
                             out, False),
        "predict video": (["predict", "m.onnx", str(tmp_path / "clip.mp4"), "--out", str(out)],
                          out, False),
        "train": (["train", "classify", "--out", str(out), "--quiet"], out, False),
        "train --resume": (["train", "--out", str(out), "--resume", "--quiet"], out, False),
        "export": (["export", str(checkpoint), "--out", str(out / "m.onnx")], out / "m.onnx", True),
        "export default": (["export", str(checkpoint)], tmp_path / "best.onnx", True),
        "data synth": (["data", "synth", "classify", str(out), "--train", "2", "--val", "1"],
                       out, False),
        "data convert": (["data", "convert", str(tmp_path / "data.yaml"), str(out)], out, False),
    }[verb]


@pytest.mark.parametrize("verb", ["predict", "predict --resume", "predict video", "train",
                                  "train --resume", "export", "export default", "data synth",
                                  "data convert"])
def test_second_run_into_a_held_output_is_one_line_naming_the_holder(verb, tmp_path, capsys):
    out = tmp_path / "out"
    argv, target, is_file = _argv(verb, out, tmp_path)
    holder = _start_holder(target, is_file)
    try:
        assert main(argv) == 2
        (line,) = _error_lines(capsys)
        assert line == (f"error: {target} is in use by another vision-tasks run (pid {holder.pid}); "
                        f"wait for it to finish or choose another "
                        f"{'OUT' if verb.startswith('data') else '--out'}")
        assert lock_path_for(target, is_file).read_text().strip() == str(holder.pid)
    finally:
        _stop(holder)


def test_second_cli_process_exits_2_without_a_traceback(tmp_path):
    out = tmp_path / "out"
    holder = _start_holder(out)
    try:
        run = subprocess.run([sys.executable, "-m", "vision_tasks", "predict", "m.onnx",
                              str(tmp_path), "--out", str(out)],
                             capture_output=True, text=True, timeout=WAIT_S)
        assert run.returncode == 2
        assert run.stderr.strip().splitlines() == [
            f"error: {out} is in use by another vision-tasks run (pid {holder.pid}); wait for it "
            "to finish or choose another --out"]
    finally:
        _stop(holder)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, capsys):
    out = tmp_path / "set"
    holder = _start_holder(out)
    _stop(holder)  # SIGKILL: no finally ran, the lock file is still there
    assert (out / LOCK_NAME).is_file()
    assert main(["data", "synth", "classify", str(out), "--train", "2", "--val", "1",
                 "--size", "16"]) == 0
    assert len(list((out / "train").rglob("*.png"))) == 2
    assert not (out / LOCK_NAME).exists()  # given back (removed) at the end of the run


def test_lock_is_given_back_and_taken_again_in_one_process(tmp_path):
    with hold_output(tmp_path / "o") as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()
    with hold_output(tmp_path / "o"):
        pass


def test_held_lock_refuses_a_second_holder_in_the_same_process(tmp_path):
    """flock locks belong to the open file: a second open in one process is refused too (a
    verb that calls another into the same output must not lock twice)."""
    from vision_tasks.locks import OutputInUseError

    with hold_output(tmp_path / "o"):
        with pytest.raises(OutputInUseError, match=f"pid {os.getpid()}"):
            with hold_output(tmp_path / "o"):
                pass


def test_train_processes_of_nproc_do_not_lock_the_folder_their_parent_holds(tmp_path, capsys,
                                                                             monkeypatch):
    from vision_tasks.locks import OUT_LOCKED_ENV

    out = tmp_path / "run"
    with hold_output(out):  # as `train --nproc N` does before it starts torchrun
        monkeypatch.setenv(OUT_LOCKED_ENV, str(out.resolve()))
        assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
        (line,) = _error_lines(capsys)
        assert "nothing to resume" in line  # got past the lock: the parent holds it
        monkeypatch.delenv(OUT_LOCKED_ENV)
        monkeypatch.setenv("RANK", "1")  # torchrun started by hand: only rank 0 locks
        assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
        assert "nothing to resume" in _error_lines(capsys)[0]


def test_a_run_that_fails_leaves_no_folder_it_made(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in _error_lines(capsys)[0]
    assert not out.exists()


def test_a_folder_sweep_spares_the_temp_file_of_an_export_under_way(tmp_path):
    out = tmp_path / "out"
    with hold_output(out / "m.onnx", is_file=True):  # an export writing into the folder
        temp = out / ".m.onnx.abcdefgh.tmp"
        temp.write_bytes(b"being written")
        with hold_output(out):  # a predict into the same folder
            assert temp.exists()


@pytest.mark.parametrize("verb", ["val", "compose", "filters", "demo"])
def test_the_other_writing_verbs_hold_their_outputs_too(verb, tmp_path, capsys):
    out = tmp_path / "out"
    argv, target, is_file = {
        "val": (["val", "best.pt", "--out", str(out)], out, False),
        "compose": (["compose", "a.pt", "b.pt", "--out", str(out / "m.pt")], out / "m.pt", True),
        "filters": (["filters", "best.pt", "x.png", "--out", str(out)], out, False),
        "demo": (["demo", "--out", str(out), "--quiet"], out, False),
    }[verb]
    holder = _start_holder(target, is_file)
    try:
        assert main(argv) == 2
        (line,) = _error_lines(capsys)
        assert f"in use by another vision-tasks run (pid {holder.pid})" in line
    finally:
        _stop(holder)
