"""Keep a user's work while freeing the machine: rebind, adopt, move (see move.py)."""
