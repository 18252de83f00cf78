"""vmsim: a small full-system riscv64 emulator on Unicorn."""
__version__ = "0.1.0"
