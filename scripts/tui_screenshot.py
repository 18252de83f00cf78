"""Regenerate docs/tui.svg, the README's picture of `vmsim run --tui`: the default
guest boots under a headless TUI, and once both queues have done some work (the Linux
driver's self-tests, then an AF_ALG run) the screen is saved as SVG.

Usage: .venv/bin/python scripts/tui_screenshot.py [OUT.svg]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsim.build.guest import ensure_default_guest
from vmsim.build.unicorn import ensure_native_library
from vmsim.cli.observe import Observers
from vmsim.core.console import write_stdout
from vmsim.core.machine import Machine, MachineConfig
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO

APPEND = "console=ttyS0 vmsim.run=crypto-reg,afalg-kat,rsa-keyctl,idle vmsim.idle_ms=30000"


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tui.svg")
    ensure_native_library()
    paths = ensure_default_guest()
    observers = Observers.from_args(argparse.Namespace(trace_file=None, tui=True,
                                                       explain=False, observe=None))
    config = MachineConfig(kernel=paths.kernel, initrd=paths.initrd, append=APPEND,
                           virtio=[CRYPTO.configure()])
    config.trace = observers.sink()
    config.virtio = observers.devices(config.virtio)

    async def pilot(pilot) -> None:
        app = pilot.app
        while b"test=rsa-keyctl" not in observers.console.history():
            await pilot.pause(0.2)
        await pilot.pause(1.5)
        table = app.query_one("#requests")
        table.focus()
        await pilot.press("up", "up", "enter")
        await pilot.pause(0.5)
        app.save_screenshot(str(out))
        await pilot.press("q")

    try:
        with Machine(config, output=observers.output(write_stdout)) as machine:
            machine.load()
            observers.attach(machine)
            observers.run_tui(machine, headless=True, auto_pilot=pilot, size=(160, 50))
    finally:
        observers.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
