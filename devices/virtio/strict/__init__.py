"""`--strict`: a checker that holds a virtio driver to the spec's driver MUST rules.

The device itself stays as tolerant as hardware; with `--strict` the slot's transport
is wrapped (`CheckedTransport`) so that every register access, every chain the driver
makes available and every device-type request is looked at first, against rules that
are plain data (`rules.Rule`: id, words, spec section, conformance label, check).
Each broken rule is reported once through a callback the machine supplies (it adds
the guest pc), then only counted. Nothing here imports the engine or the core.
"""
