"""The Textual UI: `vmsim run --tui`, `vmsim demo --tui`, `vmsim trace view`, `vmsim
tui --attach`. It only reads: trace records (from a live hub, a file or a socket) and
the guest console, and drives a machine only through vmsim.trace.control's gate. The
core and the devices never import this package."""
