"""On the PYTHONPATH of the tests' Jupyter servers, their hubs and the hubs' users' servers
(tests.jupyter.server_env), two changes to how they start, none to what they answer:

- jupyter_events' schemas are checked without jsonschema's optional IRI format checker. Its
  module (rfc3987_syntax) builds a grammar as it is imported, about 1.1 s of CPU per server
  start, more than the rest of the start, for a format no test's event uses; jsonschema skips
  the checker when the import fails, as where the module is not installed.
- A kernel's ZMQ ports are drawn below the ephemeral range, as tests.jupyter.free_port draws
  the servers' ports. jupyter_client picks them by binding port 0, releases them, and the
  kernel binds them a second later; any outgoing connection on the host may take one meanwhile
  (jupyter_client issue 487). Such a kernel never recovers: its ports are cached, so each of
  its five restarts binds the same taken port ("Address already in use", then "died"), and a
  test waited 60 s for it. Below the ephemeral range only a port another test's server or
  kernel chose can collide, and those are drawn at random from 22,000.
"""

import importlib.abc
import importlib.util
import sys

from lowports import below_ephemeral  # (this folder is on the server's path)

sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # (None: the import fails)


class _KernelPorts(importlib.abc.MetaPathFinder):
    """Once jupyter_client.connect is imported, its LocalPortCache draws as above (and as
    before where no such port is free)."""

    def find_spec(self, name, path=None, target=None):
        if name != "jupyter_client.connect":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            cache = module.LocalPortCache
            drawn = cache.find_available_port

            def find_available_port(self, ip):
                port = below_ephemeral(ip)
                if port is None or port in self.currently_used_ports:
                    return drawn(self, ip)
                self.currently_used_ports.add(port)
                return port

            cache.find_available_port = find_available_port

        spec.loader.exec_module = patched  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _KernelPorts())
