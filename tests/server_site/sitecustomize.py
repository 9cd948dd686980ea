"""On the PYTHONPATH of the tests' Jupyter servers, their hubs and the hubs' users' servers
(tests.jupyter.server_env): jupyter_events' schemas are checked without jsonschema's optional
IRI format checker. Its module (rfc3987_syntax) builds a grammar as it is imported, about 1.1 s
of CPU per server start, more than the rest of the start, for a format no test's event uses;
jsonschema skips the checker when the import fails, as where the module is not installed."""

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # (None: the import fails)
