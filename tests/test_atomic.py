"""optimizer.io.atomic.write_atomic_together: none of the files published unless every one was
written; then every one is on disk before the first rename, so the renames follow one another
with nothing slow between them (they are not one atomic step: docstring)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from optimizer.io import atomic


def test_a_failed_write_publishes_none_and_leaves_no_temporary_file(tmp_path: Path):
    old = {name: f"old {name}" for name in ("a", "b", "c")}
    for name, text in old.items():
        (tmp_path / name).write_text(text)

    def fail(path: Path) -> None:
        raise OSError("disk full")
    writers = {tmp_path / "a": lambda p: p.write_text("new a"),
               tmp_path / "b": lambda p: p.write_text("new b"), tmp_path / "c": fail}
    with pytest.raises(OSError, match="disk full"):
        atomic.write_atomic_together(writers)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == old


def test_every_file_is_flushed_before_the_first_rename(tmp_path: Path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("flush")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic.write_atomic_together({tmp_path / n: (lambda p, n=n: p.write_text(n))
                                  for n in ("a", "b", "c")})
    assert events == ["flush"] * 3 + ["rename"] * 3
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a": "a", "b": "b", "c": "c"}
