"""Atomic writes: the old file or the whole new one, usual permissions, optional fsync."""

from __future__ import annotations

import os
import stat

import pytest

from vision_tasks import fileio


def test_a_write_replaces_the_file_with_the_usual_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    fileio.atomic_write_text(target, "old")
    fileio.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert fileio.process_umask() == mask
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "best.pt"
    target.write_bytes(b"finished checkpoint")
    with pytest.raises(RuntimeError, match="killed"):
        with fileio.atomic_path(target, durable=True) as tmp:
            tmp.write_bytes(b"half of a checkp")
            raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"finished checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_durable_writes_flush_the_file_before_the_rename_and_the_folder_after(tmp_path,
                                                                              monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fileio.atomic_write_bytes(tmp_path / "model.onnx", b"graph", durable=True)
    assert events == [("fsync", False), ("replace", "model.onnx"), ("fsync", True)]
    events.clear()
    fileio.atomic_write_bytes(tmp_path / "drawing.jpg", b"pixels")
    assert events == [("replace", "drawing.jpg")]
