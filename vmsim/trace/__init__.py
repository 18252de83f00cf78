"""Trace recording, reading and export: the observers of vmsim.devices.events.

`hub` fans the devices' events out to any number of observers through bounded
buffers, stamped with host and guest time; `record` writes and reads JSON-lines trace
files; `model` replays events into the state a viewer shows (queues, descriptor
owners, requests, sessions); `stats`, `perfetto`, `chrome` and `pcapng` turn a
recorded trace into a table, a Perfetto or Chrome timeline and a Wireshark capture.
Nothing here imports textual; the core never imports this package.
"""
