"""What the operating system knows: processes (psutil) and GPUs (NVML)."""
