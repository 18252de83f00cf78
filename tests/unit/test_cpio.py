"""The initramfs writer: what GNU cpio reads back from a newc archive, and the same
layout rendered for gen_init_cpio."""
import shutil
import subprocess
from pathlib import Path

import pytest

from vmsim.build import cpio


@pytest.fixture
def entries(tmp_path: Path) -> list[cpio.Entry]:
    binary = tmp_path / "prog"
    binary.write_bytes(b"\x7fELF" + bytes(range(7)))      # not a multiple of 4
    return [cpio.Dir("/dev"), cpio.CharDevice("/dev/console", 0o600, 5, 1),
            cpio.File("/libexec/prog", binary), cpio.Symlink("/init", "/libexec/prog")]


def test_gnu_cpio_reads_back_every_entry(entries, tmp_path):
    if shutil.which("cpio") is None:
        pytest.fail("cpio is missing; install with: apt-get install cpio", pytrace=False)
    archive = cpio.newc_archive(entries)
    assert len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().splitlines()
    kinds = {line.split()[-1] if "->" not in line else line.split()[-3]: line[:10]
             for line in listing}
    assert kinds == {"dev": "drwxr-xr-x", "dev/console": "crw-------",
                     "libexec/prog": "-rwxr-xr-x", "init": "lrwxrwxrwx"}
    assert any(line.endswith("init -> /libexec/prog") for line in listing)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "libexec/prog"], input=archive, cwd=out,
                   check=True)
    assert (out / "libexec/prog").read_bytes() == entries[2].source.read_bytes()


def test_the_same_input_gives_the_same_bytes(entries):
    assert cpio.newc_archive(entries) == cpio.newc_archive(entries)


def test_the_gen_init_cpio_list_has_one_line_per_entry(entries):
    assert cpio.gen_init_cpio_list(entries).splitlines() == [
        "dir /dev 0755 0 0", "nod /dev/console 0600 0 0 c 5 1",
        f"file /libexec/prog {entries[2].source} 0755 0 0",
        "slink /init /libexec/prog 0777 0 0"]
