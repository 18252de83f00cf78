"""docs/bringup.md's deliberate bugs: the bare-metal driver built with -D VMSIM_BUG=n
(guests/baremetal/bugs.h) breaks one virtio rule at one bring-up step, and `vmsim run
--strict` names that rule first, with the pc of the offending access; the program
then goes on as far as the device lets it (a refused session or request ends it with
that step's exit status, as the walkthrough says)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.guest import require_tools
from vmsim.build import baremetal

VMSIM = [sys.executable, "-c", "import sys; from vmsim.cli.main import main; sys.exit(main())"]
FINDING = re.compile(r"^vmsim: strict: virtio-crypto(?: queue \d+)?: ([a-z0-9-]+): .* at pc (0x[0-9a-f]+)",
                     re.MULTILINE)

# bug number -> (the step, the rule --strict names first, the program's exit status)
BUGS = {
    1: ("find the device", "mmio-identify-first", 0),
    2: ("negotiate", "features-after-features-ok", 0),
    3: ("queues", "mmio-queue-num-max-unread", 0),
    4: ("session", "crypto-key-len", 6),          # EXIT_AES_SESSION: the device says ERR
    5: ("request", "crypto-session-id", 8),       # EXIT_AES_REQUEST: INVSESS
    6: ("destroy", "crypto-destroy-session", 12), # EXIT_AES_DESTROY: ERR
    7: ("power off", "status-clear", 0),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_step_bug_is_named_by_strict(bug: int) -> None:
    require_tools(*baremetal.REQUIREMENTS)
    step, rule, status = BUGS[bug]
    elf = baremetal.ensure_example({"VMSIM_BUG": str(bug)})
    result = subprocess.run(VMSIM + ["run", "--kernel", str(elf), "--mem", "16M", "--strict"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=300)
    findings = FINDING.findall(result.stderr)
    assert findings, f"{step}: --strict found nothing:\n{result.stderr}"
    assert findings[0][0] == rule, f"{step}: {findings}"
    assert int(findings[0][1], 16) >= 0x8020_0000      # an address in the program
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_without_strict_the_bugs_pass_unnoticed() -> None:
    """The point of --strict: the device is as tolerant as hardware, so a rule broken
    where the device copes (a late feature write, a status bit cleared) goes unseen."""
    require_tools(*baremetal.REQUIREMENTS)
    for bug in (2, 7):
        elf = baremetal.ensure_example({"VMSIM_BUG": str(bug)})
        result = subprocess.run(VMSIM + ["run", "--kernel", str(elf), "--mem", "16M"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0 and "strict" not in result.stderr, result.stderr
