"""A GDB remote-protocol stub for the machine (`vmsim run --gdb PORT`).

`packets` frames the wire protocol, `target` describes the hart to GDB (registers, the
target description, Sv39 translation) and `stub` serves a connection: a socket thread
receives, the CPU thread executes every command while the guest is halted. The core
knows nothing of this package: it only calls the `debugger` the CLI attaches.
"""
