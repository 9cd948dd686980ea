"""Keep a user's work while freeing the machine: rebind, adopt, move (see move.py)."""

CHUNK_BYTES = 8 << 20  # payload bytes per message through nbtui
MAX_BYTES = 1 << 30  # default bound on one variable's serialised size (--max-bytes)
