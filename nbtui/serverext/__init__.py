"""A Jupyter Server extension: ``GET /api/nbtui/usage``, the server host's view of its kernels.

Read-only, behind jupyter_server's own authentication and authorisation (``kernels``,
``read``). For each kernel the server manages: its PID (from the kernel manager's
provisioner), the CPU, memory and GPU use of its whole process tree, and the host's
GPU summary, measured with psutil and NVML on the server's host. It never sends the
kernel a message, so it never moves ``last_activity``.

Enabled by the ``jupyter_server_config.d/nbtui.json`` file installed with nbtui;
``jupyter server extension disable nbtui`` turns it off.

One change to the server itself: its kernel websockets send each message at once
(``TCP_NODELAY``). jupyter_server leaves Nagle's algorithm on, so behind a proxy
(JupyterHub's configurable-http-proxy) the second and later frames of a reply wait for
the proxy's delayed ACK: ~40 ms on every console round trip. Measured on a real hub:
1+1 through the proxy 48 ms with Nagle, 6.3 ms without (the kernel over ZMQ: 6.6 ms).
``c.NbtuiExtension.kernel_websocket_nodelay = False`` leaves the server as it was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from nbtui import __version__
from nbtui.host.wire import PATH
from nbtui.core.orphans import is_idle

if TYPE_CHECKING:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.serverapp import ServerApp
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

    from nbtui.host.local import LocalHost

DEFAULT_IDLE = 3600.0


class _State:
    """One LocalHost for the server's life (CPU % needs the previous sample)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host: Optional[LocalHost] = None

    def report(self, kernel_pids: dict, idle: list, terminals: dict | None = None) -> dict:
        """``terminals``: terminal name -> (shell PID or None, open websockets, idle past the threshold)."""
        from nbtui.host import wire
        from nbtui.host.local import MIN_CPU_INTERVAL, LocalHost
        terminals = terminals or {}
        term_pids = {name: pid for name, (pid, _c, _i) in terminals.items()}
        idle_terms = [name for name, (_p, _c, is_idle) in terminals.items() if is_idle]
        with self._lock:
            if self._host is None:
                self._host = LocalHost()
            host = self._host
            trees, terms, devices, note = host.server_report(kernel_pids, idle, term_pids, idle_terms)
            if any(t.cpu_percent is None for t in (*trees.values(), *terms.values())):
                # A kernel seen for the first time: measure its CPU over a short interval
                # (in this worker thread, never on the server's event loop).
                time.sleep(MIN_CPU_INTERVAL)
                trees, terms, devices, note = host.server_report(kernel_pids, idle, term_pids, idle_terms)
        return wire.dump(host.hostname, __version__, {k: trees.get(k) for k in kernel_pids}, devices, note,
                         terminals={name: (terms.get(name), c) for name, (_p, c, _i) in terminals.items()})


def _terminals(settings: dict[str, Any], now: dt.datetime,
               idle_after: float) -> dict[str, tuple[Optional[int], Optional[int], bool]]:
    """name -> (shell PID, open websockets, idle past ``idle_after``) of the server's terminals
    (jupyter_server_terminals' manager; none when terminals are off)."""
    manager = settings.get("terminal_manager")
    out = {}
    for name, term in list(getattr(manager, "terminals", {}).items()):
        pid = getattr(getattr(term, "ptyproc", None), "pid", None)
        clients = getattr(term, "clients", None)
        last = getattr(term, "last_activity", None)
        is_idle = False
        if isinstance(last, dt.datetime):
            if last.tzinfo is None:
                last = last.replace(tzinfo=dt.timezone.utc)
            is_idle = (now - last).total_seconds() >= idle_after
        out[str(name)] = (pid if isinstance(pid, int) and pid > 0 else None,
                          len(clients) if isinstance(clients, list) else None, is_idle)
    return out


def _pid_of(km: object) -> int | None:
    prov = getattr(km, "provisioner", None)
    pid = getattr(prov, "pid", None)
    if isinstance(pid, int) and pid > 0:
        return pid
    proc = getattr(prov, "process", None) or getattr(km, "kernel", None)
    pid = getattr(proc, "pid", None)
    return pid if isinstance(pid, int) and pid > 0 else None


def _handler_class() -> type[APIHandler]:
    from jupyter_server.auth.decorator import authorized
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    class UsageHandler(APIHandler):
        auth_resource = "kernels"

        @web.authenticated
        @authorized
        async def get(self) -> None:
            try:
                idle_after = float(self.get_argument("idle", str(DEFAULT_IDLE)))
            except ValueError:
                raise web.HTTPError(400, "idle: expected seconds") from None
            mkm = self.kernel_manager
            now = dt.datetime.now(dt.timezone.utc)
            kernel_pids, idle = {}, []
            for kid in list(mkm.list_kernel_ids()):
                try:
                    km = mkm.get_kernel(kid)
                except KeyError:
                    continue  # shut down meanwhile
                kernel_pids[kid] = _pid_of(km)
                last = getattr(km, "last_activity", None)
                if isinstance(last, dt.datetime):
                    if last.tzinfo is None:
                        last = last.replace(tzinfo=dt.timezone.utc)
                    if is_idle((now - last).total_seconds(), getattr(km, "execution_state", None), idle_after):
                        idle.append(kid)
            state: _State = self.settings["nbtui_usage_state"]
            terminals = _terminals(self.settings, now, idle_after)
            body = await asyncio.get_running_loop().run_in_executor(None, state.report, kernel_pids, idle, terminals)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))

    return UsageHandler


def _kernel_websockets_without_nagle() -> bool:
    """Kernel websockets opened from now on set ``TCP_NODELAY`` (see the module's text).
    False where this jupyter_server has no handler of that shape."""
    try:
        from jupyter_server.services.kernels.websocket import KernelWebsocketHandler
    except ImportError:
        return False
    if getattr(KernelWebsocketHandler, "_nbtui_nodelay", False):  # a second server in this process
        return True
    opened = KernelWebsocketHandler.open

    async def open(self: KernelWebsocketHandler, *args: Any, **kwargs: Any) -> None:
        try:
            self.set_nodelay(True)
        except Exception:  # a connection already gone: the handler's own open says so
            pass
        return await opened(self, *args, **kwargs)

    KernelWebsocketHandler.open = open  # type: ignore[method-assign]
    KernelWebsocketHandler._nbtui_nodelay = True  # type: ignore[attr-defined]
    return True


def _load_jupyter_server_extension(serverapp: ServerApp) -> None:
    from jupyter_server.utils import url_path_join

    web_app = serverapp.web_app
    web_app.settings["nbtui_usage_state"] = _State()
    route = url_path_join(web_app.settings.get("base_url", "/"), PATH)
    web_app.add_handlers(".*$", [(route, _handler_class())])
    serverapp.log.info("nbtui: usage at /%s", PATH)
    # From a config file a bool; from the command line (a class jupyter_server does not know)
    # the string as typed.
    nodelay = serverapp.config.get("NbtuiExtension", {}).get("kernel_websocket_nodelay", True)
    if str(nodelay).strip().lower() not in ("false", "0", "no", "off"):
        if _kernel_websockets_without_nagle():
            serverapp.log.info("nbtui: kernel websockets send each message at once (TCP_NODELAY)")


# Older jupyter_server / notebook look for this name.
load_jupyter_server_extension = _load_jupyter_server_extension
