"""Never a traceback, never a stray process: the real `vmsim` process against signals,
closed and full outputs, vanished terminals, odd files and odd text.

Each case drives `vmsim run` as a separate process on a bare-metal program and checks
what a user would see: the exit status, and stderr that is empty or one
`vmsim: error:` line. The signal cases run a guest that keeps a worker process busy
for seconds (one raw RSA decryption with a 16384-bit private exponent and no CRT values),
so that a worker which does not die with vmsim shows.
"""
from __future__ import annotations

import array
import fcntl
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.support.guest import require_tools
from tests.support.hostile import (
    VMSIM, Pty, assert_clean, assert_one_error_line, busy, children, kill_quietly,
    start_on_terminal, still_alive_after, wait_for, waiting_for_a_job,
)
from vmsim.build import baremetal

MEM = "16M"
TIMEOUT = 60.0
# Prints forever: stdout is always being written when something goes wrong with it.
CHATTER = "1:  putc 'x'\n    j 1b\n"
EXIT_0 = "exit 0\n"
LOTS = 200_000
# Prints LOTS bytes, then powers off.
PRINT_LOTS = f"""
    li t3, {LOTS}
1:  putc 'y'
    addi t3, t3, -1
    bnez t3, 1b
    exit 0
"""


@dataclass
class Done:
    status: int
    stdout: str
    stderr: str

    def everything(self) -> str:
        return self.stdout + self.stderr


def vmsim(*args: str) -> list[str]:
    return [str(VMSIM), "run", "--mem", MEM, *args]


def run(argv: list[str], stdout: int | None = subprocess.PIPE,
        preexec_fn: Callable[[], None] | None = None, timeout: float = TIMEOUT) -> Done:
    """Run to the end with stdin closed to it; kill the whole session on a timeout."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=preexec_fn)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{argv} still running after {timeout} s") from None
    return Done(proc.returncode, (out or b"").decode(errors="replace"),
                err.decode(errors="replace"))


def address_space_limit(size: int) -> Callable[[], None]:
    """A preexec_fn that caps the child's address space: mmap of more fails, ENOMEM."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (size, size))


# ------------------------------------------------------------------ the cases

def closed_stdout(build: Callable[[str], Path]) -> Done:
    """`vmsim run ... | head -c 300`: the reader goes away while the guest prints."""
    proc = subprocess.Popen(vmsim("--kernel", str(build(CHATTER))), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        head = proc.stdout.read(300)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, head.decode(), err.decode(errors="replace"))


def non_blocking_stdout(build: Callable[[str], Path]) -> Done:
    """stdout is a pipe whose open file is non-blocking (another program sharing it set
    O_NONBLOCK), and its reader is slow: writes meet EAGAIN, and must wait, not drop."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = subprocess.Popen(vmsim("--kernel", str(build(PRINT_LOTS))), stdin=subprocess.DEVNULL,
                            stdout=write_end, stderr=subprocess.PIPE, start_new_session=True)
    os.close(write_end)
    try:
        def unread() -> int:
            count = array.array("i", [0])
            fcntl.ioctl(read_end, termios.FIONREAD, count)
            return count[0]
        wait_for(lambda: unread() >= 65536 or proc.poll() is not None, TIMEOUT,
                 "the pipe to fill")
        out = bytearray()
        while chunk := os.read(read_end, 65536):
            out += chunk
        err = proc.stderr.read()
        proc.wait(TIMEOUT)
    finally:
        os.close(read_end)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def full_stdout(build: Callable[[str], Path]) -> Done:
    with open("/dev/full", "wb") as full:
        return run(vmsim("--kernel", str(build(CHATTER))), stdout=full.fileno())


def vanished_terminal(build: Callable[[str], Path], tmp_path: Path, controlling: bool) -> Done:
    """The terminal's master side closes while the guest prints (a terminal window
    closed). Without a controlling terminal nothing sends SIGHUP, and the next write
    fails with EIO; with one, SIGHUP and EIO race. stderr goes to a file, so that what
    vmsim says there can be read after the terminal is gone."""
    terminal = Pty()
    tmp_path.mkdir(parents=True, exist_ok=True)
    errors = tmp_path / "stderr"
    with open(errors, "wb") as err:
        proc = start_on_terminal(vmsim("--kernel", str(build(CHATTER))), terminal,
                                 stderr=err.fileno(), controlling=controlling)
    try:
        terminal.read_until(b"x" * 100, TIMEOUT)
        terminal.close()
        proc.wait(TIMEOUT)
    finally:
        terminal.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, "", errors.read_text(errors="replace"))


def bad_text(build: Callable[[str], Path], *option: str) -> Done:
    """An option whose text is not UTF-8, as a shell passes $'\\xff\\xfe'."""
    argv = [os.fsencode(word) for word in vmsim("--kernel", str(build(EXIT_0)), *option)]
    return run(argv)  # type: ignore[arg-type]


def memory_refused(build: Callable[[str], Path]) -> Done:
    return run(vmsim("--kernel", str(build(EXIT_0)), "--mem", "16G"),
               preexec_fn=address_space_limit(3 << 30))


def odd_file(build: Callable[[str], Path], tmp_path: Path, option: str, kind: str) -> Done:
    """`option` names something that is not a usable regular file. The child's address
    space is capped, so that code which reads /dev/zero to the end fails soon, not
    after eating the host's memory."""
    kernel = str(build(EXIT_0))
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif kind == "larger than RAM":
        target = tmp_path / "huge"
        with open(target, "wb") as file:
            file.truncate(64 << 30)                # sparse: no disk used, no time to read
    else:
        target = Path(kind)
    args = ["--kernel", kernel, option, str(target)] if option != "--kernel" \
        else ["--kernel", str(target)]
    return run(vmsim(*args), preexec_fn=address_space_limit(3 << 30), timeout=30)


ODD_FILES = [
    ("--kernel", "/dev/zero", "character device"),
    ("--initrd", "/dev/zero", "character device"),
    ("--kernel", "fifo", "FIFO"),
    ("--initrd", "fifo", "FIFO"),
    ("--kernel", "larger than RAM", "bytes of RAM"),
    ("--initrd", "larger than RAM", "bytes of RAM"),
    ("--dtb-out", "fifo", "FIFO"),
    ("--dtb-out", "/dev/full", "character device"),
]


# ------------------------------------------------------------------ output

def test_a_closed_stdout_ends_the_run_quietly_with_141(build) -> None:
    done = closed_stdout(build)
    assert done.stdout == "x" * 300
    assert (done.status, done.stderr) == (141, "")


def test_a_non_blocking_stdout_loses_nothing(build) -> None:
    done = non_blocking_stdout(build)
    assert (done.status, done.stderr) == (0, "")
    assert done.stdout == "y" * LOTS


def test_a_full_stdout_is_one_error_line(build) -> None:
    done = full_stdout(build)
    assert_one_error_line(done.stderr, "console output", "No space left on device")
    assert done.status == 1


def test_a_vanished_terminal_is_one_error_line(build, tmp_path) -> None:
    done = vanished_terminal(build, tmp_path, controlling=False)
    assert_one_error_line(done.stderr, "console output", "Input/output error")
    assert done.status == 1


def test_a_hung_up_terminal_ends_the_run_cleanly(build, tmp_path) -> None:
    """SIGHUP (129, nothing to say) or the failed write (1, one line), whichever vmsim
    notices first; never killed where it stood, never a traceback."""
    done = vanished_terminal(build, tmp_path, controlling=True)
    assert_clean(done.stderr)
    if done.status == 128 + signal.SIGHUP:
        assert done.stderr == ""
    else:
        assert done.status == 1, done
        assert_one_error_line(done.stderr, "Input/output error")


# ------------------------------------------------------------------ text, memory, files

@pytest.mark.parametrize("option", [
    ("--append", b"console=ttyS0 \xff\xfe"),
    ("-device", b"virtio-crypto,queues=\xff"),
    ("-d", b"guest_errors,\xfe"),
    ("--fault", b"op=CIPHER_ENCRYPT,status=\xff"),
    ("-M", b"virt\xff"),
])
def test_text_that_is_not_utf8_is_one_error_line(build, option) -> None:
    name, value = option
    done = bad_text(build, name, os.fsdecode(value))
    line = assert_one_error_line(done.stderr, name, "not valid UTF-8", "byte 0x")
    assert done.status == 2, line


def test_guest_ram_the_host_refuses_is_one_line_naming_the_size(build) -> None:
    done = memory_refused(build)
    assert_one_error_line(done.stderr, "16G", "guest RAM", "--mem")
    assert done.status == 2


@pytest.mark.parametrize("option, kind, words", ODD_FILES)
def test_files_that_are_not_regular_files_are_one_line(build, tmp_path, option, kind,
                                                        words) -> None:
    done = odd_file(build, tmp_path, option, kind)
    assert_one_error_line(done.stderr, words)
    assert done.status == 2


# ------------------------------------------------------------------ all of it, grepped

def test_no_case_prints_a_traceback(build, tmp_path) -> None:
    """Every case above once more, all their output together, grepped."""
    transcript = [closed_stdout(build), non_blocking_stdout(build), full_stdout(build),
                  vanished_terminal(build, tmp_path / "a", controlling=False),
                  vanished_terminal(build, tmp_path / "b", controlling=True),
                  bad_text(build, "--append", os.fsdecode(b"console=ttyS0 \xff\xfe")),
                  memory_refused(build)]
    for index, (option, kind, _) in enumerate(ODD_FILES):
        where = tmp_path / f"odd{index}"
        where.mkdir()
        transcript.append(odd_file(build, where, option, kind))
    everything = "\n".join(done.everything() for done in transcript)
    assert "Traceback" not in everything, everything


# ------------------------------------------------------------------ signals and workers

HEAVY_BITS = 16384
HEAVY_MAIN = r"""
/* One raw RSA decryption that keeps a worker busy for seconds: a 16384-bit modulus
 * (the largest the device takes) and a private key with no CRT values, so one pow()
 * with a 16383-bit exponent. It waits for a byte on the UART first, so that the test
 * can send it only once the workers are ready. */
#include "board.h"
#include "lib.h"
#include "virtio_crypto.h"
#include "heavy.h"

static struct virtio_crypto crypto;
static uint8_t result[sizeof(heavy_message)];

int main(unsigned long hart_id, const void *device_tree)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;
    struct vq_completion done;
    uint64_t session = 0;

    (void)hart_id;
    (void)device_tree;
    if (virtio_crypto_init(&crypto, VIRTIO_CRYPTO_BASE) != VIRTIO_CRYPTO_INIT_OK)
        board_exit(1);
    if (virtio_crypto_create_rsa_session(&crypto, VIRTIO_CRYPTO_AKCIPHER_KEY_PRIVATE,
                                         VIRTIO_CRYPTO_RSA_RAW_PADDING, heavy_key,
                                         sizeof(heavy_key), &session, &done) != VIRTIO_CRYPTO_OK)
        board_exit(2);
    uart_puts("@vmsim event=waiting\n");
    while (!(uart[5] & 1))              /* LSR.DR: the test's go */
        ;
    (void)uart[0];
    uart_puts("@vmsim event=heavy-submitted\n");
    int r = virtio_crypto_akcipher(&crypto, VIRTIO_CRYPTO_AKCIPHER_DECRYPT, session, heavy_message,
                                   sizeof(heavy_message), result, sizeof(result), &done);
    board_exit(r == VIRTIO_CRYPTO_OK ? 0 : 3);
}
"""


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")   # a leading 0: positive
    return b"\x02" + _der_length(len(raw)) + raw


def _c_array(name: str, data: bytes) -> str:
    body = ",".join(str(byte) for byte in data)
    return f"static const uint8_t {name}[{len(data)}] = {{{body}}};\n"


@pytest.fixture(scope="module")
def heavy_program(tmp_path_factory) -> Path:
    """The bare-metal example's driver with HEAVY_MAIN as its main, and the key."""
    require_tools(*baremetal.REQUIREMENTS)
    rng = random.Random(20240607)
    modulus = rng.getrandbits(HEAVY_BITS) | (1 << (HEAVY_BITS - 1)) | 1
    private = rng.getrandbits(HEAVY_BITS - 1) | 1
    body = b"".join(_der_integer(v) for v in (0, modulus, 65537, private, 1, 1, 1, 1, 1))
    key = b"\x30" + _der_length(len(body)) + body            # RSAPrivateKey, no CRT values
    message = b"\0" + rng.randbytes(HEAVY_BITS // 8 - 1)      # smaller than the modulus
    work = tmp_path_factory.mktemp("heavy")
    for source in baremetal.BAREMETAL_SOURCES.iterdir():
        if source.is_file():
            shutil.copy(source, work / source.name)
    (work / "main.c").write_text(HEAVY_MAIN)
    (work / "heavy.h").write_text(_c_array("heavy_key", key) + _c_array("heavy_message", message))
    elf = work / "heavy.elf"
    subprocess.run(baremetal.compile_command(elf, {}, root=work), check=True, cwd=work)
    return elf


@dataclass
class Busy:
    proc: subprocess.Popen
    workers: list[int]
    busy: int


def start_busy(heavy_program: Path) -> Busy:
    """vmsim with two workers, one of them deep in the heavy job."""
    proc = subprocess.Popen(vmsim("--kernel", str(heavy_program),
                                  "-device", "virtio-crypto,workers=2"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    workers = wait_for(lambda: len(children(proc.pid)) == 2 and children(proc.pid), TIMEOUT,
                       "two worker processes")
    wait_for(lambda: all(waiting_for_a_job(pid) for pid in workers), TIMEOUT,
             "the workers to be ready")
    proc.stdin.write(b"g")
    proc.stdin.flush()
    worker = wait_for(lambda: next((pid for pid in workers if busy(pid)), None), TIMEOUT,
                      "a worker to take the heavy job (did it run inline?)")
    return Busy(proc, list(workers), worker)


def finish(busy_run: Busy, timeout: float = TIMEOUT) -> Done:
    proc = busy_run.proc
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        kill_quietly(busy_run.workers)
    return Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_under_crypto_load_end_vmsim_like_sigint(heavy_program,
                                                                      signum) -> None:
    """The exit status names the signal, nothing is printed, no worker is left: the
    busy one is killed, not waited for (its job has seconds to go)."""
    run_ = start_busy(heavy_program)
    started = time.monotonic()
    run_.proc.send_signal(signum)
    left = still_alive_after([run_.proc.pid], 10.0)
    done = finish(run_)
    assert not left, "vmsim did not end within 10 s of the signal"
    assert done.status == 128 + signum, done
    assert done.stderr == ""
    assert_clean(done.stdout)
    assert "heavy-submitted" in done.stdout
    assert still_alive_after(run_.workers, 1.0) == [], "a worker outlived vmsim"
    assert time.monotonic() - started < 10.0


def test_kill_9_of_vmsim_takes_its_busy_workers_within_a_second(heavy_program) -> None:
    run_ = start_busy(heavy_program)
    run_.proc.kill()
    assert still_alive_after([run_.proc.pid], 10.0) == []
    survivors = still_alive_after(run_.workers, 1.0)
    done = finish(run_)
    assert survivors == [], f"workers {survivors} outlived vmsim (busy one: {run_.busy})"
    assert_clean(done.everything())


def test_sigint_sigterm_sighup_at_start_up(heavy_program) -> None:
    """A signal as soon as the workers exist, while they are still warming up, still
    unwinds: status 128 + n, no traceback (a worker still warming up must not fail on a
    parent that went), no worker left. The workers start when the guest creates its
    first public-key session, which the heavy program does first thing."""
    kernel = heavy_program
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        proc = subprocess.Popen(vmsim("--kernel", str(kernel), "-device",
                                      "virtio-crypto,workers=2"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        workers = wait_for(lambda: children(proc.pid), TIMEOUT, "a worker process")
        proc.send_signal(signum)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 128 + signum, (signum, err)
        assert err == b"", err
        assert_clean(out.decode(errors="replace"))
        assert still_alive_after(list(workers), 1.0) == []


# ------------------------------------------------------------------ the pool on its own

def spin(seconds: float) -> float:
    """A job that computes (never sleeps) for `seconds`."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return count


POOL_PARENT = r"""
import sys, time
from vmsim.devices.virtio.crypto.pool import WorkerPool
pool = WorkerPool("tests.machine.test_hostile_host:spin", None, workers=1, on_result=None)
pool.start()
while not pool.all_ready:
    time.sleep(0.01)
pool.submit(1, 60.0)
print(pool.pids()[0], flush=True)
time.sleep(120)
"""


def test_a_busy_worker_dies_with_its_parent_whatever_kills_it() -> None:
    """kill -9 of the pool's owner: the worker computing a minute-long job goes at once
    (PR_SET_PDEATHSIG), silently."""
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", POOL_PARENT], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(root)))
    worker = None
    try:
        worker = int(parent.stdout.readline())
        wait_for(lambda: busy(worker), TIMEOUT, "the worker to start the job")
        parent.kill()
        parent.wait(TIMEOUT)
        assert still_alive_after([worker], 1.0) == [], "the worker outlived its parent"
        assert_clean(parent.stderr.read().decode(errors="replace"))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if worker is not None:
            kill_quietly([worker])
