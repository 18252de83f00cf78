"""The virtio-crypto device (device ID 20)."""
