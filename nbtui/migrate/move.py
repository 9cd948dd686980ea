"""Move a kernel's user namespace into a new kernel on another server.

The order keeps the user's work safe:

1. preflight, changing nothing: the target server answers and has the kernel spec, the
   notebook path has no session there, the source is a Python kernel and not busy;
2. inventory of the source (user names, types, serialised sizes, what cannot move);
3. a new kernel on the target; every movable name is serialised in the source, carried
   through nbtui in chunks of at most ``chunk_bytes`` (binary buffers, one chunk read
   ahead), checksummed (CRC-32) on both ends and deserialised in the target;
4. verification: every moved name present in the target with the expected type and the
   same checksum;
5. a notebook session on the target bound to the new kernel;
6. only then, unless ``keep_source``, the source is re-checked and shut down.

Anything failing before 5 leaves the source as it was (our hidden helper removed) and
shuts the half-made target kernel down. nbtui never unpickles; the payload never touches
its disk.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from nbtui.files import audit
from nbtui.core.errors import NbtuiError, NotFound, UsageError
from nbtui.jupyter.channels import ChannelError, KernelChannels, WebsocketChannels
from nbtui.jupyter.rest import ServerClient, ServerError, is_loopback
from nbtui.migrate import CHUNK_BYTES_WEBSOCKET, CHUNK_BYTES_ZMQ, MAX_BYTES
from nbtui.migrate.agent import SERIALIZERS
from nbtui.migrate.remote import Agent, AgentError
from nbtui.core.units import human_bytes

if TYPE_CHECKING:
    from nbtui.host.signals import Ident
    from nbtui.migrate.adopt import LocalKernel


class MigrationFailed(NbtuiError):
    """The move was aborted; the source is untouched (exit 1)."""


@dataclass
class Progress:
    stage: str  # inventory | start | transfer | verify | bind | shutdown | done
    done: int = 0  # bytes carried so far
    total: int = 0  # bytes to carry
    name: Optional[str] = None
    note: Optional[str] = None


@dataclass
class Entry:
    name: str
    type: str
    size: Optional[int] = None
    status: str = "move"  # move | import | skip
    reason: Optional[str] = None
    serializer: Optional[str] = None
    gpu: list[str] = field(default_factory=list)
    gpu_libs: list[str] = field(default_factory=list)
    module: Optional[str] = None
    verified: bool = False
    note: Optional[str] = None  # e.g. "cuda:0 -> cpu (2 tensors)"
    process_bound: bool = False  # an open file, a lock …: leaving it behind loses no data


@dataclass
class Report:
    source: dict
    target: dict
    dry_run: bool = False
    entries: list[Entry] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    source_shut_down: bool = False
    source_kept_reason: Optional[str] = None
    serializers: dict = field(default_factory=dict)  # source / target: available
    chunk_bytes: Optional[int] = None  # payload bytes per message, as used
    notebook_file: Optional[dict] = None  # how the notebook file comes along (notebook.NotebookPlan)
    audit_error: Optional[str] = None  # an outcome line that could not be written (said on stderr)

    @property
    def moved(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "move"]

    @property
    def skipped(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "skip"]

    @property
    def imported(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "import"]

    def to_json(self) -> dict:
        def one(e: Entry) -> dict:
            return {k: v for k, v in asdict(e).items() if k not in ("status", "gpu_libs", "verified", "process_bound")}

        return {
            "dry_run": self.dry_run,
            "source": self.source,
            "target": self.target,
            "moved": [one(e) | {"verified": e.verified} for e in self.moved],
            "imported": [{"name": e.name, "module": e.module} for e in self.imported],
            "skipped": [{"name": e.name, "type": e.type, "size": e.size, "reason": e.reason} for e in self.skipped],
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "source_shut_down": self.source_shut_down,
            "source_kept_reason": self.source_kept_reason,
            "serializers": self.serializers,
            "chunk_bytes": self.chunk_bytes,
            "notebook_file": self.notebook_file,
        }


@dataclass
class Options:
    to: str
    kernel_name: Optional[str] = None
    notebook: Optional[str] = None
    keep_source: bool = False
    dry_run: bool = False
    max_bytes: Optional[int] = MAX_BYTES
    wait: bool = False
    chunk_bytes: Optional[int] = None  # default: 16 MiB over ZMQ, 8 MiB where a websocket is on the way
    window: int = 1  # reads in flight ahead of the chunk being forwarded
    write_window: int = 0  # writes sent before the oldest one's answer is awaited (0: each is awaited)
    transport: str = "auto"  # auto (ZMQ to kernels on this host) | websocket (always through the servers)
    eager_start: bool = False  # start the target kernel beside the inventory (no confirmation to wait for)
    serializers: tuple[str, ...] = SERIALIZERS  # tried in this order, per name
    wait_timeout: float = 3600.0
    overwrite_notebook: bool = False  # copy the source's notebook over a different file at the target path


# -- the source: a kernel on a server, or a local kernel known by its connection file ----


# How long a kernel may take to answer. jupyter_server holds a kernel websocket's handshake
# until the kernel answers kernel_info (up to its kernel_info_timeout, 60 s by default), so
# a kernel that is starting on a loaded host, or busy, is slow to connect as well as to
# answer: the handshake gets the same bound as the answer, not the channels' 10 s.
KERNEL_ANSWER = 30.0
NEW_KERNEL_ANSWER = 60.0  # a kernel migrate itself just started: its first answer comes later


def kernel_channels(client: ServerClient, kernel_id: str, transport: str = "auto",
                    answer: float = KERNEL_ANSWER) -> KernelChannels:
    """A kernel's channels for a migration. ``auto``: straight over ZMQ where the kernel runs
    on this host and its connection file is readable (the payload still goes through nbtui,
    but skips both servers' websockets, ~4x faster), else through its server's websocket."""
    if transport == "auto" and is_loopback(client.url):
        from nbtui.migrate.adopt import local_connection_file
        found = local_connection_file(kernel_id, client.url)
        if found:
            return zmq_channels(*found)
    return WebsocketChannels(client, kernel_id, reconnect=False, open_timeout=answer)


def zmq_channels(path: str, info: dict, ident: Ident) -> KernelChannels:
    """ZMQ channels to a local kernel, with ``alive()``: over ZMQ nobody reports a kernel's
    death (a server does, through its websocket), so migrate watches the process."""
    from nbtui.host import signals
    from nbtui.jupyter.channels import ZmqChannels
    ch = ZmqChannels(path, info)
    ch.alive = lambda: signals.same_process(ident, signals.identify(ident.pid))  # type: ignore[attr-defined]
    return ch


async def ready(ch: KernelChannels, timeout: float) -> None:
    """Wait until a request's whole round trip (reply and idle on iopub) comes back: over ZMQ,
    iopub messages sent before the subscription settles are lost (the slow joiner)."""
    from nbtui.core.errors import TimedOut
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wait = 0.2  # short first: a lost idle must not cost seconds; longer for a kernel still starting
    while True:
        ex = await ch.execute("", silent=True, store_history=False, allow_stdin=False)
        try:
            await asyncio.wait_for(ex.wait(), wait)
            return
        except asyncio.TimeoutError:
            ex.cancel()
            wait = min(wait * 2, 2.0)
            if loop.time() > deadline:
                raise TimedOut(f"the kernel did not answer within {timeout:g} s") from None


class Source:
    """What migrate needs of the kernel it moves from."""

    kernel_name: Optional[str] = None
    notebook: Optional[str] = None
    server: Optional[str] = None

    def describe(self) -> dict:
        raise NotImplementedError

    def channels(self, transport: str = "auto") -> KernelChannels:
        raise NotImplementedError

    async def state(self) -> str:
        """idle | busy | starting | … | gone"""
        raise NotImplementedError

    async def shutdown(self) -> None:
        raise NotImplementedError


class ServerSource(Source):
    def __init__(self, client: ServerClient, kernel_id: str, kernel_name: str, notebook: Optional[str]):
        self.client = client
        self.server = client.name
        self.kernel_id = kernel_id
        self.kernel_name = kernel_name
        self.notebook = notebook

    def describe(self) -> dict:
        return {"server": self.server, "kernel_id": self.kernel_id, "kernel_name": self.kernel_name,
                "notebook": self.notebook}

    def channels(self, transport: str = "websocket") -> KernelChannels:
        return kernel_channels(self.client, self.kernel_id, transport)

    async def state(self) -> str:
        try:
            model = await self.client.kernel(self.kernel_id)
        except ServerError as e:
            if e.kind == "not-found":
                return "gone"
            raise
        return str(model.get("execution_state") or "unknown")

    async def shutdown(self) -> None:
        await self.client.shutdown(self.kernel_id)


class LocalSource(Source):
    """A local kernel known by its process and connection file (adopted: its server is gone)."""

    def __init__(self, lk: LocalKernel) -> None:
        self.lk = lk
        self.kernel_name = lk.kernel_name
        self.notebook = None  # JPY_SESSION_NAME is a path on this host, not on a server: --notebook

    def describe(self) -> dict:
        d = self.lk.describe()
        return {"server": None, "kernel_id": d["kernel_id"], "kernel_name": d["kernel_name"], "pid": d["pid"],
                "notebook": d["notebook"], "connection_file": d["connection_file"]}

    def channels(self, transport: str = "auto") -> KernelChannels:
        return zmq_channels(self.lk.connection_file, self.lk.info, self.lk.ident)

    async def state(self) -> str:
        from nbtui.host import signals
        return "idle" if signals.same_process(self.lk.ident, signals.identify(self.lk.pid)) else "gone"

    def kernel_uid(self) -> int:
        """Who runs the kernel (-1 when that cannot be read: then no file is theirs)."""
        import psutil

        try:
            return psutil.Process(self.lk.pid).uids().effective
        except psutil.Error:
            return -1

    async def shutdown(self) -> None:
        """A shutdown_request on the control channel, then wait for the process to exit."""
        import psutil

        from nbtui.host import signals
        if not signals.same_process(self.lk.ident, signals.identify(self.lk.pid)):
            return
        ch = self.channels()
        try:
            await ch.connect()
            await ch.request("shutdown_request", {"restart": False}, channel="control", timeout=10)
        finally:
            await ch.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:
            if not signals.same_process(self.lk.ident, signals.identify(self.lk.pid)):
                return
            try:
                if psutil.Process(self.lk.pid).status() == psutil.STATUS_ZOMBIE:
                    return
            except psutil.Error:
                return
            await asyncio.sleep(0.1)
        raise ChannelError(f"pid {self.lk.pid} did not exit after its shutdown request")


# -- the move ----------------------------------------------------------------------------


class Migration:
    """One move, from preflight to shutdown. ``run()`` returns the Report."""

    def __init__(self, source: Source, target: ServerClient, opts: Options,
                 progress: Optional[Callable[[Progress], None]] = None):
        self.source = source
        self.target = target
        self.opts = opts
        self._progress = progress or (lambda p: None)
        self.report = Report(source=source.describe(), target={"server": target.name}, dry_run=opts.dry_run)
        self.target_kernel: Optional[str] = None
        self._src: Optional[Agent] = None
        self._dst: Optional[Agent] = None
        self._src_ch: Optional[KernelChannels] = None
        self._dst_ch: Optional[KernelChannels] = None
        self._src_count: Optional[int] = None
        self._done = False
        self._intent = False  # the "migrate" intent line is written: every outcome gets its line
        self._elapsed = 0.0
        self._starting: Optional[asyncio.Future] = None
        self._target_known = asyncio.Event()  # the eager start has its kernel id (or failed)
        self._notebook: Any = None  # notebook.NotebookPlan, from preflight

    def progress(self, stage: str, **kw: Any) -> None:
        try:
            self._progress(Progress(stage, **kw))
        except Exception:
            pass

    # -- preflight ------------------------------------------------------------------------

    def notebook_path(self) -> str:
        path = self.opts.notebook or self.source.notebook
        if not path:
            was = self.report.source.get("notebook")
            hint = f" (on this host it was {was})" if was else ""
            raise UsageError(f"the source kernel has no notebook session on a server{hint}: "
                             "name the notebook's path on the target with --notebook PATH")
        return path.lstrip("/")

    async def preflight(self) -> tuple[str, str]:
        """(kernel spec name, notebook path) on the target, or an error; changes nothing."""
        path = self.notebook_path()
        name = self.opts.kernel_name or self.source.kernel_name
        try:  # the target's specs and sessions, and the source's state, at once
            specs, sessions, state = await asyncio.gather(
                self.target.kernelspecs(), self.target.sessions(), self.source.state())
        except ServerError as e:
            if e.server != self.target.name:
                raise
            raise MigrationFailed(f"target {e}; nothing was changed") from None
        available = sorted((specs.get("kernelspecs") or {}).keys())
        if not name:
            name = specs.get("default")
        if name not in available:
            raise MigrationFailed(f"server {self.target.name} has no kernel spec {name!r} "
                                  f"(it has: {', '.join(available) or 'none'}); pick one with --kernel NAME")
        taken = [s for s in sessions if str(s.get("path") or "").lstrip("/") == path]
        if taken:
            kid = ((taken[0].get("kernel") or {}).get("id") or "?")[:8]
            raise MigrationFailed(f"{path} already has a session on {self.target.name} (kernel {kid}); "
                                  "name another notebook with --notebook PATH")
        await self._check_idle(state)
        await self._plan_notebook(path)
        return name, path

    async def _plan_notebook(self, path: str) -> None:
        """How the notebook file comes along (reads only): the source's file is copied, an
        existing different one at the target path refuses the move unless overwrite_notebook."""
        from nbtui.migrate import notebook
        src = self.source
        local = isinstance(src, LocalSource)  # its server is gone: the file it was started for, here
        owner = src.kernel_uid() if isinstance(src, LocalSource) else None  # only that user's own file
        try:
            self._notebook = plan = await notebook.plan(
                self.target, path, source=getattr(src, "client", None),
                source_path=src.lk.notebook if isinstance(src, LocalSource) else src.notebook,
                overwrite=self.opts.overwrite_notebook, local=local, owner=owner)
        except ServerError as e:
            raise MigrationFailed(f"cannot bring the notebook file: {e}; nothing was changed") from None
        self.report.notebook_file = plan.to_json()

    async def _check_idle(self, state: str) -> None:
        if state == "gone":
            raise NotFound("the source kernel is gone")
        if state != "busy":
            return
        if not self.opts.wait:
            raise MigrationFailed("the source kernel is busy running code; try again when it is idle, or pass --wait")
        self.progress("wait", note="waiting for the source kernel to finish what it runs")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.wait_timeout
        while state == "busy":
            if loop.time() > deadline:
                raise MigrationFailed(f"the source kernel stayed busy for {self.opts.wait_timeout:g} s")
            await asyncio.sleep(0.5)
            state = await self.source.state()
        if state == "gone":
            raise NotFound("the source kernel went away while nbtui waited")

    # -- steps ----------------------------------------------------------------------------

    async def _open_source(self) -> Agent:
        ch = self.source.channels(self.opts.transport)
        self._src_ch = ch
        try:
            await ch.connect()
            await ready(ch, KERNEL_ANSWER)
            info = await ch.kernel_info(timeout=KERNEL_ANSWER)
        except (ServerError, ChannelError) as e:
            raise MigrationFailed(f"cannot reach the source kernel: {e}") from None
        lang = ((info.get("language_info") or {}).get("name") or "").lower()
        if lang != "python":
            raise MigrationFailed(f"the source kernel runs {lang or 'an unknown language'}, not Python: "
                                  "nbtui can only move the namespace of a Python (IPython) kernel")
        agent = Agent(ch, "source")
        await agent.install()
        self._src = agent
        return agent

    async def inventory(self) -> list[Entry]:
        src = self._src or await self._open_source()
        probe = await src.one("probe")
        self.report.serializers["source"] = probe.get("serializers")
        self._src_count = probe.get("execution_count")
        sers = [s for s in self.opts.serializers if s in (probe.get("serializers") or [])]
        data = await src.one("inventory", sers, self.opts.max_bytes)
        entries = [Entry(**{k: v for k, v in e.items() if k in Entry.__dataclass_fields__}) for e in data["names"]]
        self.report.entries = entries
        return entries

    async def prepare(self) -> Report:
        """Preflight and inventory (the plan); changes nothing but a hidden helper in the source."""
        t0 = time.perf_counter()
        try:
            kernel_name, path = await self.preflight()
            if self.opts.eager_start and not self.opts.dry_run:  # no question will be asked: overlap
                self._write_intent()  # before the target kernel starts: nothing happens unaudited
                self._starting = asyncio.ensure_future(self._start_target(kernel_name))
            self.progress("inventory")
            await self.inventory()
            self.report.target.update(kernel_name=kernel_name, notebook=path)
        except BaseException as e:
            await self._abort(e)
            await self._close()
            raise
        finally:
            self._elapsed += time.perf_counter() - t0
            self.report.seconds = self._elapsed
        return self.report

    async def execute(self) -> Report:
        """Move what ``prepare`` planned; then bind, verify and (unless kept) shut the source down."""
        t0 = time.perf_counter()
        try:  # intent before anything changes: an unwritable audit log means it does not start
            self._write_intent()
        except audit.AuditError:
            await self._close()
            raise
        try:
            await self._move(self.report.target["kernel_name"], self.report.target["notebook"], self.report.entries)
            await asyncio.gather(self._finish(), self._release_target())
        except BaseException as e:
            await self._abort(e)
            raise
        finally:
            await self._close()
            self._elapsed += time.perf_counter() - t0
            self.report.seconds = self._elapsed
        self.progress("done", done=self.report.bytes, total=self.report.bytes)
        return self.report

    def _write_intent(self) -> None:
        if not self._intent:
            audit.intent("migrate", self.report.source, to=self.report.target)
            self._intent = True

    def _audit(self, action: str, result: str, **extra: Any) -> None:
        """An outcome line. What was done is done: a log that fails now is said in the
        report (``audit_error``), never raised over the result."""
        try:
            audit.record(action, self.report.source, result, **extra)
        except OSError as e:
            self.report.audit_error = f"could not write the audit log {audit.audit_path()}: {e.strerror or e}"

    async def cancel(self) -> None:
        """After ``prepare``, when the user says no: remove the helper, close connections."""
        if self._starting is not None:
            await self._abort(MigrationFailed("cancelled"))
        await self._close()

    async def run(self) -> Report:
        await self.prepare()
        if self.opts.dry_run:
            await self.cancel()
            return self.report
        return await self.execute()

    async def _start_target(self, kernel_name: str) -> Agent:
        """A new kernel on the target, connected, with the agent installed."""
        self.progress("start", note=f"starting a {kernel_name} kernel on {self.target.name}")
        try:
            model = await self.target.start_kernel(kernel_name)
        except ServerError as e:
            raise MigrationFailed(f"could not start a kernel on {self.target.name}: {e.detail}") from None
        finally:
            self._target_known.set()
        self.target_kernel = model["id"]
        self.report.target["kernel_id"] = self.target_kernel
        ch = kernel_channels(self.target, self.target_kernel, self.opts.transport, NEW_KERNEL_ANSWER)
        self._dst_ch = ch
        await ch.connect()
        await ready(ch, NEW_KERNEL_ANSWER)
        dst = Agent(ch, "target")
        await dst.install()
        self._dst = dst
        return dst

    async def _move(self, kernel_name: str, path: str, entries: list[Entry]) -> None:
        if self._starting is not None:  # started beside the inventory
            dst = await self._starting
        else:
            dst = await self._start_target(kernel_name)
        libs = sorted({lib for e in entries for lib in e.gpu_libs})
        probe = await dst.one("probe", libs)
        self.report.serializers["target"] = probe.get("serializers")
        keep_on_gpu = [lib for lib, ok in (probe.get("gpu") or {}).items() if ok]
        taken = set(probe.get("names") or ())
        both = [s for s in self.opts.serializers
                if s in (probe.get("serializers") or []) and s in (self.report.serializers.get("source") or [])]
        for e in entries:
            if e.status != "skip" and e.name in taken:
                e.status, e.reason = "skip", "already defined in the target kernel (by IPython or a startup file)"
            elif e.status == "move" and e.serializer not in both:
                e.status, e.reason = "skip", (f"needs {e.serializer}, which the target kernel does not have")

        movers = [e for e in entries if e.status == "move"]
        total = sum(e.size or 0 for e in movers)
        done = 0
        src = self._src
        assert src is not None
        chunk = self.chunk_bytes()
        self.report.chunk_bytes = chunk
        _free_chunks_at_once(chunk)
        for e in movers:
            self.progress("transfer", done=done, total=total, name=e.name)
            try:
                head = await src.one("pack", e.name, both, keep_on_gpu)
            except AgentError as err:  # e.g. it changed since the inventory
                e.status, e.reason = "skip", str(err).removeprefix("the source kernel raised ")
                continue
            sizes = [int(n) for n in head["sizes"]]
            e.size, e.serializer, e.type = sum(sizes), head["serializer"], head["type"]
            if head.get("gpu"):
                e.gpu = head["gpu"]
                e.note = f"{', '.join(sorted(set(head['gpu'])))} -> cpu ({len(head['gpu'])} tensor(s)); the target has no GPU for it"
            if self.opts.max_bytes is not None and e.size > self.opts.max_bytes:
                await src.call("sent", e.name)
                e.status, e.reason = "skip", f"{e.size} bytes serialised, over --max-bytes {self.opts.max_bytes}"
                continue
            await dst.call("expect", e.name, e.serializer, sizes)
            await self._carry(src, dst, e.name, sizes, chunk, done, total)
            done += e.size
            sent = await src.one("sent", e.name)
            got = await dst.one("load", e.name)
            if got.get("error"):
                raise MigrationFailed(f"{e.name} could not be restored in the target kernel: {got['error']}")
            if not got.get("complete") or got.get("crcs") != sent.get("crcs"):
                raise MigrationFailed(f"{e.name} arrived damaged (checksums differ)")
            if got.get("type") != e.type:
                raise MigrationFailed(f"{e.name} arrived as {got.get('type')}, not {e.type}")
            self.report.bytes += e.size
        self.progress("transfer", done=done, total=total)

        modules = {e.name: e.module for e in entries if e.status == "import"}
        if modules:
            imported = (await dst.one("import_modules", modules)).get("imports") or {}
            for e in entries:
                if e.status == "import" and imported.get(e.name):
                    e.status, e.reason = "skip", f"module {e.module} cannot be imported in the target: {imported[e.name]}"

        self.progress("verify")
        present = (await dst.one("commit")).get("present") or {}
        for e in entries:
            if e.status == "move":
                if present.get(e.name) != e.type:
                    raise MigrationFailed(f"verification failed: {e.name} is {present.get(e.name) or 'missing'} "
                                          f"in the target, expected {e.type}")
                e.verified = True
            elif e.status == "import" and present.get(e.name) is None:
                raise MigrationFailed(f"verification failed: module {e.name} is missing in the target")

        if self._notebook is not None and self._notebook.action in ("copy", "overwrite", "create"):
            from nbtui.migrate import notebook
            self.progress("bind", note=self._notebook.line())
            try:
                await notebook.apply(self._notebook, self.target, getattr(self.source, "client", None))
            except ServerError as e:
                raise MigrationFailed(f"could not write the notebook file {path} on {self.target.name}: {e.detail}") from None
        self.progress("bind", note=f"notebook session {path} on {self.target.name}")
        try:
            session = await self.target.create_session(path, kernel_id=self.target_kernel)
        except ServerError as e:
            raise MigrationFailed(f"could not bind {path} to the new kernel: {e.detail}") from None
        if ((session.get("kernel") or {}).get("id")) != self.target_kernel:
            raise MigrationFailed(f"{path} got a session of another kernel on {self.target.name} (a session appeared there meanwhile)")
        self.report.target["session_id"] = session.get("id")

    def chunk_bytes(self) -> int:
        websocket = any(isinstance(ch, WebsocketChannels) for ch in (self._src_ch, self._dst_ch))
        bound = CHUNK_BYTES_WEBSOCKET if websocket else CHUNK_BYTES_ZMQ
        return max(1, min(int(self.opts.chunk_bytes or bound), CHUNK_BYTES_WEBSOCKET if websocket else 1 << 62))

    async def _carry(self, src: Agent, dst: Agent, name: str, sizes: list[int], chunk: int,
                     done: int, total: int) -> None:
        """Copy one name's parts chunk by chunk, as a pipeline: the next read is asked for as
        soon as a chunk arrives, and each chunk is handed to the target without waiting for
        the previous write's answer (a kernel runs requests in order). nbtui holds at most
        the chunk it forwards and the one arriving (``window`` reads ahead)."""
        reads = [(part, off, min(chunk, size - off)) for part, size in enumerate(sizes) for off in range(0, size, chunk)]
        window = max(1, self.opts.window)
        pending_reads: deque = deque()
        pending_writes: deque = deque()
        try:
            for i in range(min(window, len(reads))):
                pending_reads.append(await src.start("read", name, *reads[i]))
            for i, (part, off, n) in enumerate(reads):
                results = await pending_reads.popleft().result()
                if not results or not results[-1][1]:
                    raise MigrationFailed(f"the source kernel sent no bytes for {name} (part {part} at {off})")
                if i + window < len(reads):
                    pending_reads.append(await src.start("read", name, *reads[i + window]))
                pending_writes.append(await dst.start("write", name, part, off, buffers=results[-1][1]))
                del results
                while len(pending_writes) > self.opts.write_window:
                    await pending_writes.popleft().result()
                done += n
                self.progress("transfer", done=done, total=total, name=name)
            while pending_writes:
                await pending_writes.popleft().result()
        finally:
            for c in (*pending_reads, *pending_writes):
                c.cancel()

    async def _finish(self) -> None:
        """After a verified, bound move: shut the source down unless asked not to."""
        self._done = True
        self._audit("migrate", "ok", to=self.report.target,
                    moved=[e.name for e in self.report.moved], bytes=self.report.bytes)
        if self.opts.keep_source:
            self.report.source_kept_reason = "--keep-source"
            return
        left = [e.name for e in self.report.skipped if not e.process_bound]
        if keeps_source(self.report):  # data that did not move (too big, collided, no serializer): do not lose it
            shown = ", ".join(left[:5]) + (" …" if len(left) > 5 else "")
            self.report.source_kept_reason = (f"{len(left)} skipped name(s) hold data that did not move ({shown}); "
                                              "the source was kept so nothing is lost")
            if self._src is not None:
                await self._src.uninstall()
            return
        self.progress("shutdown")
        src = self._src
        assert src is not None
        try:  # intent before the re-check and the shutdown, as kill: unwritable, the source stays
            audit.intent("migrate-shutdown", self.report.source)
        except audit.AuditError as e:
            self.report.source_kept_reason = f"the source was kept: {e}"
            await src.uninstall()
            return
        try:
            result = await self._shutdown_source(src)
        except BaseException as e:  # ctrl+c or a failure mid-way: the intent still gets its outcome
            self._audit("migrate-shutdown", "interrupted" if isinstance(e, asyncio.CancelledError)
                        else f"failed: {e or type(e).__name__}")
            raise
        self._audit("migrate-shutdown", result)

    async def _shutdown_source(self, src: Agent) -> str:
        """Re-check the source, then shut it down; returns the audit result."""
        try:
            count = (await src.one("probe", timeout=30)).get("execution_count")
            await src.uninstall()
            state = await self.source.state()
        except (ServerError, ChannelError, NbtuiError) as e:
            self.report.source_kept_reason = f"could not re-check the source: {e}"
            return f"refused: {self.report.source_kept_reason}"
        if state == "gone":
            self.report.source_kept_reason = "the source kernel was already gone"
            return "gone"
        # Our probe queues behind any cell the user started meanwhile, and a cell that ran
        # moved the count: the count alone tells (a REST "busy" may be stale).
        if count != self._src_count:
            self.report.source_kept_reason = "the source ran code during the move; it was kept so nothing is lost"
            return "refused: the source changed during the move"
        try:
            await self.source.shutdown()
        except (ServerError, ChannelError) as e:
            self.report.source_kept_reason = f"shutting the source down failed: {e}"
            return f"failed: {e}"
        self.report.source_shut_down = True
        return "ok"

    async def _abort(self, error: BaseException) -> None:
        """Leave the source as it was and remove the half-made target kernel."""
        if self._done:  # moved and bound: the target holds the work now
            return
        if self._starting is not None and not self._starting.done():
            # Wait only for the kernel's id (its REST start), so it can be removed; what is
            # left of the start (readiness, the agent) is stopped, not waited out.
            known = asyncio.ensure_future(self._target_known.wait())
            try:
                await asyncio.wait({self._starting, known}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                known.cancel()
            self._starting.cancel()
            try:
                await self._starting
            except BaseException:
                pass
        if self._src is not None:
            await self._src.uninstall()
        if self.target_kernel is not None:
            await self._remove_target()
        reason = "interrupted" if isinstance(error, asyncio.CancelledError) else (str(error) or type(error).__name__)
        if self._intent:  # every intent gets its outcome (a refusal in preflight wrote neither)
            self._audit("migrate", f"aborted: {reason}", to=self.report.target)

    async def _release_target(self) -> None:
        """Remove the agent from the (verified, bound) target and close its channels."""
        if self._dst is not None:
            await self._dst.uninstall()
        if self._dst_ch is not None:
            try:
                await self._dst_ch.close()
            except Exception:
                pass

    async def _remove_target(self, timeout: float = 30.0) -> None:
        """Shut the half-made target kernel down; a kernel the server is restarting (it died)
        answers 500 until the restart settles, so retry until it is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.target_kernel is None:
            return
        if self._dst is not None:
            self._dst.installed = False  # its kernel goes: no uninstall call to wait out after
        while True:
            try:
                await self.target.shutdown(self.target_kernel)
                return
            except ServerError as e:
                if e.kind == "not-found":
                    return
                if loop.time() > deadline:
                    audit.record("migrate-cleanup", {"server": self.target.name, "kernel_id": self.target_kernel},
                                 f"failed: {e.detail}")
                    return
            except Exception:
                return
            await asyncio.sleep(0.5)

    async def _close(self) -> None:
        for agent in (self._src, self._dst):
            if agent is not None:
                await agent.uninstall()
        for ch in (self._src_ch, self._dst_ch):
            if ch is not None:
                try:
                    await ch.close()
                except Exception:
                    pass


def _free_chunks_at_once(chunk: int) -> None:
    """glibc: every block of 1 MiB or more mapped on its own and unmapped when freed, for the
    rest of this process. By default glibc raises its mapping threshold to the size of the
    first such block freed, so later chunks (ZMQ allocates each arriving one) came from heaps
    that freed memory stays in: a third chunk's worth of RSS (47 MiB against 2 x 16 on a
    256 MiB move) where nbtui holds two chunks at most. Elsewhere: nothing changes."""
    if chunk < 1 << 20:
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (a fixed one also stops glibc's raising it)


def plan_lines(report: Report) -> list[str]:
    """The inventory and plan as lines of text."""
    src, dst = report.source, report.target
    where = src.get("server") or f"pid {src.get('pid')}"
    lines = [f"plan: {where}:{(src.get('kernel_id') or '')[:8]} "
             f"({src.get('notebook') or 'no session'}) -> {dst.get('server')} "
             f"[{dst.get('kernel_name') or '?'}] as {dst.get('notebook') or '?'}"]
    width = max([len(e.name) for e in report.entries] + [4])
    for e in report.entries:
        size = human_bytes(e.size) if e.size is not None else "—"
        if e.status == "move":
            what = f"move   via {e.serializer}" + (f"; {e.note or ', '.join(e.gpu) + ' -> cpu'}" if e.gpu else "")
        elif e.status == "import":
            what = f"import {e.module}"
        else:
            what = f"skip   {e.reason}"
        lines.append(f"  {e.name:<{width}}  {e.type[:28]:<28}  {size:>7}  {what}")
    if not report.entries:
        lines.append("  (no user variables)")
    if report.notebook_file:
        from nbtui.migrate.notebook import NotebookPlan
        lines.append(NotebookPlan(**report.notebook_file).line())
    moved = report.moved
    total = sum(e.size or 0 for e in moved)
    lines.append(f"{len(moved)} to move ({human_bytes(total)}), {len(report.imported)} module(s) to import, "
                 f"{len(report.skipped)} skipped")
    if keeps_source(report):
        lines.append("the source kernel will be kept: skipped names hold data that would not move")
    return lines


def keeps_source(report: Report) -> bool:
    """Whether the plan leaves data behind, so the source is kept after the move."""
    return any(not e.process_bound for e in report.skipped)
