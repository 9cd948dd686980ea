"""nbtui's own files: config, tokens, the audit log, console history (each opened as root on a shared host could be attacked)."""
