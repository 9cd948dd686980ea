"""The fleet screen's first read, in a child process forked as `nbtui` starts (Linux).

Python runs one thread at a time: read on the fleet service's thread, the first read (httpx and
its transport loading, each server's answer parsed) took its CPU from Textual's start and
the screen's first paint. Forked before Textual loads, a child opens the fleet and reads
the servers on the other core while the parent starts the screen; each server's kernels
come back through a pipe as it answers. The parent's fleet service opens the fleet only once
the screen is drawn; its own read (with the host's usage) supersedes the child's answers
server by server (nbtui.service.service, which follows the pipe; the screens never see it).

The child reads only Jupyter servers whose token it has without asking anyone (found in a
runtime file, in the environment, or none), and none at all where a hub is configured: a
hub's users' servers (found on this host as plain ones too) are read only as the hub's,
without marking them active, and through its proxy at most every ``proxy_interval``; servers
whose token is in the keyring or comes from a command, which may prompt or leave traces,
are read once, by the parent. The child leaves the
terminal's session (it can neither read keys nor draw), samples nothing of the host and
writes no file. It ends when every server it reads has answered (each bounded by its own timeout),
dies with its parent (PR_SET_PDEATHSIG), and the parent ends and reaps it as soon as its own
first read is whole.

What crosses the pipe is pickled by our own child, read by its parent only: frames of a
4-byte length then ``("names", [NAME…])`` once, then ``("server", ServerInfo, [Kernel…])``
per answer.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

if TYPE_CHECKING:
    from nbtui.core.model import Kernel, ServerInfo

_HEAD = struct.Struct("!I")
MAX_FRAME = 1 << 30  # a frame claiming more is no frame of ours: the read ends there
REAP_WAIT = 0.2  # seconds close() waits for the killed child before a thread takes the wait over


class ForkedRead:
    """The parent's end: the child's pid and the pipe's read end (non-blocking)."""

    def __init__(self, pid: int, fd: int):
        self.pid = pid
        self.fd = fd
        self.ended = False  # the child closed the pipe (its read is over) or it broke
        self._buf = bytearray()

    @classmethod
    def start(cls, open_fleet: Callable[[], Any]) -> Optional["ForkedRead"]:
        """Fork the child, which calls ``open_fleet()`` (a fleet without a host view) and
        reads. None where no child can be had: not Linux, a thread already running (a fork
        would copy its locks mid-use), or the fork failed."""
        if not sys.platform.startswith("linux") or threading.active_count() > 1:
            return None
        try:
            r, w = os.pipe()
        except OSError:
            return None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return None
        if pid == 0:  # the child
            os.close(r)
            _child(w, open_fleet, parent)
        os.close(w)
        os.set_blocking(r, False)
        return cls(pid, r)

    def frames(self) -> list[tuple]:
        """What has arrived so far, whole frames only (never blocks)."""
        while self.fd >= 0 and not self.ended:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.ended = True
                break
            self._buf += chunk
        out = []
        while len(self._buf) >= _HEAD.size:
            (n,) = _HEAD.unpack_from(self._buf)
            if n > MAX_FRAME:
                self._buf.clear()
                self.ended = True
                break
            if len(self._buf) < _HEAD.size + n:
                break
            data = bytes(self._buf[_HEAD.size:_HEAD.size + n])
            del self._buf[:_HEAD.size + n]
            try:
                out.append(pickle.loads(data))
            except Exception:
                self._buf.clear()
                self.ended = True
                break
        return out

    def close(self) -> None:
        """End the child if it still runs, reap it, close the pipe. Idempotent, and never
        waits long: a child that does not die at once (stuck in the kernel, on a hung NFS
        home) is reaped by a thread of its own. The pid is our own unreaped child's until
        waitpid returns, so the signal cannot reach another process."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid > 0:
            pid, self.pid = self.pid, 0
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not _reaped(pid, REAP_WAIT):
                threading.Thread(target=_reaped, args=(pid, None), name="nbtui-reap", daemon=True).start()


def _reaped(pid: int, within: Optional[float]) -> bool:
    """Reap ``pid`` (our child), waiting at most ``within`` seconds (None: as long as it takes)."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        try:
            if os.waitpid(pid, 0 if deadline is None else os.WNOHANG)[0]:
                return True
        except ChildProcessError:  # reaped already
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _child(w: int, open_fleet: Callable[[], Any], parent: int) -> NoReturn:
    code = 1
    try:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(s, signal.SIG_DFL)
        from nbtui.host.lifetime import die_with_parent
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent:  # it ended before the line above took effect
            raise SystemExit(1)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the terminal is the parent's
            os.dup2(null, fd)
        os.setsid()  # and no controlling terminal: nothing here can open /dev/tty
        asyncio.run(_read(w, open_fleet()))
        code = 0
    except BaseException:
        pass
    finally:
        os._exit(code)  # never the parent's atexit handlers, buffers or code path


async def _read(w: int, fleet: Any) -> None:
    names = list(fleet.names)
    _send(w, ("names", names))
    configs = [fleet.config_of(n) for n in names]
    if any(c.hub for c in configs):
        # A hub's user's server is found on this host too (its runtime file), as a plain one:
        # only the parent's fleet knows it for the hub's and reads it without marking it
        # active (no_track_activity). With a hub, the parent reads everything.
        return
    plain = [c for c in configs if _asks_no_one(c)]
    if not plain:
        return
    mine = fleet.copy(only=[c.name for c in plain])
    left = {c.name for c in plain}
    all_answered = asyncio.Event()

    def on_server(info: ServerInfo, kernels: list[Kernel]) -> None:
        _send(w, ("server", info, list(kernels)))
        left.discard(info.name)
        if not left:
            all_answered.set()

    read = asyncio.ensure_future(mine.snapshot(on_server=on_server))
    answered = asyncio.ensure_future(all_answered.wait())
    await asyncio.wait([read, answered], return_when=asyncio.FIRST_COMPLETED)


def _asks_no_one(config: Any) -> bool:
    """A server whose token is known without the keyring or a command."""
    return config.token is not None or config.token_source in ("none", "discovered", "env")


def _send(fd: int, frame: tuple) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEAD.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]
