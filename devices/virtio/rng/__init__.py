"""The virtio entropy device (virtio-rng, device ID 4), backed by the host's os.urandom."""
from vmsim.devices.virtio.rng.device import RngDevice

__all__ = ["RngDevice"]
