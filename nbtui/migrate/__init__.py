"""Keep a user's work while freeing the machine: rebind, adopt, move (see move.py)."""

# Payload bytes per message through nbtui. Through a server's websocket a message must stay
# under tornado's websocket_max_message_size (10 MiB by default); straight over ZMQ to a
# local kernel there is no such bound, and fewer, larger chunks go faster.
CHUNK_BYTES_WEBSOCKET = 8 << 20
CHUNK_BYTES_ZMQ = 16 << 20
CHUNK_BYTES = CHUNK_BYTES_WEBSOCKET  # the bound wherever a websocket is on the way
MAX_BYTES = 1 << 30  # default bound on one variable's serialised size (--max-bytes)
