"""virtio: the MMIO transport and split virtqueues."""
