"""Cache entries lock one by one: a long build of one entry holds up no other."""
import fcntl
from pathlib import Path

import pytest
from rich.console import Console

from vmsim.build.cache import cache_lock, ensure_entry


def locked_elsewhere(path: Path) -> bool:
    with open(path, "w") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False


def test_an_entry_lock_leaves_the_other_entries_free(tmp_path):
    with cache_lock(tmp_path, "kernel-aaaa"):
        assert locked_elsewhere(tmp_path / ".lock-kernel-aaaa")
        assert not locked_elsewhere(tmp_path / ".lock-initramfs-bbbb")
        assert not locked_elsewhere(tmp_path / ".lock")


def test_only_the_entrys_own_leftovers_go(tmp_path):
    for name in (".tmp-kernel-aaaa-99", ".tmp-kernel-aaaa-arm64-99", ".tmp-initramfs-bbbb-99"):
        (tmp_path / name).mkdir()
    with cache_lock(tmp_path, "kernel-aaaa"):
        pass
    assert sorted(p.name for p in tmp_path.glob(".tmp-*")) == [
        ".tmp-initramfs-bbbb-99", ".tmp-kernel-aaaa-arm64-99"]


def test_an_entry_is_built_once(tmp_path):
    builds = []

    def build(builder, work, out):
        builds.append(work)
        (out / "Image").write_text("kernel")

    console = Console(file=open("/dev/null", "w"))
    for _ in range(2):
        ensure_entry(tmp_path / "kernel-aaaa", "kernel", console, build)
    assert len(builds) == 1 and (tmp_path / "kernel-aaaa" / "Image").read_text() == "kernel"
