"""What runs below the kernel: the SBI implementation (Python) and the boot stub."""
