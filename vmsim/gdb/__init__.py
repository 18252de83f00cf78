"""A GDB remote-protocol stub for the machine (`vmsim run --gdb PORT`).

`packets` frames the wire protocol, `target` is what every architecture's target shares
and picks the board's: `riscv` and `arm64` describe the CPU to GDB (registers, the
target description, virtual-to-physical translation, interrupt masking around a step).
`stub` serves a connection: a socket thread receives, the CPU thread executes every
command while the guest is halted. `monitor` answers GDB's `monitor` commands. The core
knows nothing of this package: it only calls the `debugger` the CLI attaches.
"""
