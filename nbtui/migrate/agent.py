"""The half of a migration that runs INSIDE a kernel (the source and the target).

nbtui sends this file's text to an IPython kernel, which runs it in a namespace of its
own; :func:`install` puts one :class:`Agent` into the user namespace as
``_nbtui_migrate`` (hidden from ``%who``, skipped by the inventory, removed by
:meth:`Agent.uninstall`). nbtui then calls its methods with short execute requests.

Results travel back as ``comm_msg`` messages (comm id ``nbtui-migrate``) on the kernel's
iopub channel, parented to the request: JSON in ``data``, payload bytes as binary
``buffers``. Payload bytes travel to the target as the binary buffers of the execute
request itself, read here from the request (``kernel.get_parent()``).

The standard library only; nothing here imports nbtui. Unpickling happens only here, in
the target kernel of the same user, never in nbtui.
"""

from __future__ import annotations  # the annotations are never evaluated in the kernel

import importlib
import io
import pickle
import sys
import threading
import types
import zlib

TYPE_CHECKING = False  # mypy reads the block below; the kernel never imports typing for it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any  # a user's objects, duck-typed (tensors, arrays): no type says more

    from ipykernel.zmqshell import ZMQInteractiveShell

COMM_ID = "nbtui-migrate"
NAME = "_nbtui_migrate"
SERIALIZERS = ("pickle", "dill", "cloudpickle")
PROTOCOL = 5


class Refused(Exception):
    """An object that must not (or cannot) move to another kernel; the message says why."""


class ProcessBound(Refused):
    """An object that only means something in this process (open file, lock, generator …):
    leaving it behind loses no data."""


def _type_name(obj: object) -> str:
    t = type(obj)
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", None) else f"{mod}.{t.__qualname__}"


_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def _refusal(obj: object) -> str | None:
    """Why ``obj`` cannot live in another process, or None."""
    if isinstance(obj, io.IOBase):
        closed = getattr(obj, "closed", False)
        return None if closed else f"an open file ({_type_name(obj)}) cannot move to another kernel"
    if isinstance(obj, _LOCKS) or isinstance(obj, (threading.Condition, threading.Semaphore, threading.Event)):
        return f"a lock ({_type_name(obj)}) belongs to this process"
    if isinstance(obj, threading.Thread):
        return "a thread belongs to this process"
    if isinstance(obj, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return f"a {type(obj).__name__} keeps a running frame, which cannot be serialised"
    if isinstance(obj, types.FrameType):
        return "a frame belongs to this process"
    mod = type(obj).__module__ or ""
    if mod == "socket" or mod.startswith("_socket") or mod.startswith("ssl"):
        return f"a socket ({_type_name(obj)}) belongs to this process"
    return None


def _gpu_device(obj: Any) -> str | None:
    """``cuda:0`` for a PyTorch tensor or CuPy array on a GPU (a duck-typed check), else None."""
    t = type(obj)
    mod = t.__module__ or ""
    if mod.startswith("cupy") and callable(getattr(t, "get", None)) and hasattr(obj, "device"):
        return f"cuda:{getattr(obj.device, 'id', '?')}"
    if callable(getattr(t, "cpu", None)):
        try:
            dev = getattr(obj, "device", None)
        except Exception:
            return None
        kind = getattr(dev, "type", None)
        if isinstance(kind, str) and kind not in ("cpu", "meta"):
            return str(dev)
    return None


def _to_cpu(obj: Any) -> Any:
    t = type(obj)
    if (t.__module__ or "").startswith("cupy"):
        return obj.get()  # a NumPy array
    cpu = obj.cpu()
    if type(cpu) is not t and t.__name__ == "Parameter":  # keep torch.nn.Parameter a Parameter
        try:
            cpu = t(cpu, getattr(obj, "requires_grad", True))
        except Exception:
            pass
    return cpu


def _nbytes(obj: Any) -> int:
    n = getattr(obj, "nbytes", None)
    if isinstance(n, int):
        return n
    try:
        return int(obj.element_size()) * int(obj.nelement())
    except Exception:
        return 0


class _Rules:
    """What every pickler here does on top of its serializer.

    - refuses what cannot live in another process (open files, locks, generators …);
    - plain pickle stores functions and classes by reference: one defined in the
      notebook (``__main__``) would not exist in the target, so plain pickle refuses it
      and dill or cloudpickle, which store it by value, get the name instead;
    - a GPU tensor/array becomes a CPU one when the target has no GPU for it
      (unless its library is in ``keep_on_gpu``), or is only measured (``count_only``).
    """

    by_reference = False
    keep_on_gpu: tuple[str, ...] = ()  # libraries (torch, cupy) whose tensors stay on the GPU
    count_only = False

    def _setup(self) -> None:
        self.converted: list[str] = []  # devices moved to CPU (or, counting, found)
        self.gpu_libs: set[str] = set()
        self.gpu_bytes = 0

    def _rule(self, obj: object) -> object:
        why = _refusal(obj)
        if why:
            raise ProcessBound(why)
        if self.by_reference and isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            raise Refused(f"{getattr(obj, '__qualname__', obj)!s} is defined in the notebook: plain pickle "
                          "stores it by reference (dill or cloudpickle in both kernels would carry it)")
        device = _gpu_device(obj)
        if device is not None:
            lib = (type(obj).__module__ or "?").split(".")[0]
            self.gpu_libs.add(lib)
            if self.count_only:
                self.converted.append(device)
                self.gpu_bytes += _nbytes(obj)
                return (type(None), ())
            if lib not in self.keep_on_gpu:
                self.converted.append(device)
                return _to_cpu(obj).__reduce_ex__(PROTOCOL)
        return NotImplemented


if TYPE_CHECKING:
    class _RulesPickler(_Rules, pickle.Pickler):
        """What _pickler_class makes: one serializer's Pickler with the rules on top."""


def _pickler_class(serializer: str) -> type[_RulesPickler]:
    base: type[pickle.Pickler]
    if serializer == "pickle":
        base = pickle.Pickler
    elif serializer == "dill":
        import dill

        base = dill.Pickler
    elif serializer == "cloudpickle":
        import cloudpickle

        base = cloudpickle.Pickler
    else:
        raise ValueError(f"unknown serializer {serializer!r}")

    # mypy cannot check a base chosen at run time (pickle's, dill's or cloudpickle's Pickler)
    class P(_Rules, base):  # type: ignore[valid-type,misc]
        by_reference = serializer == "pickle"

        def __init__(self, file: _Counter | io.BytesIO, **kw: Any) -> None:
            base.__init__(self, file, protocol=PROTOCOL, **kw)
            self._setup()

        def reducer_override(self, obj: object) -> object:
            rv = self._rule(obj)
            if rv is NotImplemented:
                parent = getattr(base, "reducer_override", None)
                if parent is not None:
                    return parent(self, obj)
            return rv

    return P


def _loads(serializer: str) -> Callable[..., Any]:
    if serializer == "dill":
        import dill

        return dill.loads
    if serializer == "cloudpickle":
        import cloudpickle

        return cloudpickle.loads
    return pickle.loads


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def write(self, b: bytes | bytearray | memoryview) -> int:
        n = memoryview(b).nbytes
        self.n += n
        return n


def _available(name: str) -> bool:
    if name == "pickle":
        return True
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


def _reason(e: BaseException) -> str:
    if isinstance(e, Refused):
        return str(e)
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}"[:300]


class _Out:
    """A name serialised for sending: its parts (the pickle stream, then out-of-band buffers)."""

    def __init__(self, parts: list[memoryview]) -> None:
        self.parts = parts
        self.crc = [0] * len(parts)
        self.pos = [0] * len(parts)


class _In:
    def __init__(self, serializer: str, sizes: Sequence[int], crcs: Iterable[int]) -> None:
        self.serializer = serializer
        self.parts = [bytearray(n) for n in sizes]
        self.crcs = list(crcs)
        self.crc = [0] * len(sizes)
        self.pos = [0] * len(sizes)


class Agent:
    def __init__(self, ip: ZMQInteractiveShell) -> None:
        self.ip = ip
        self.kernel = ip.kernel
        self.out: dict[str, _Out] = {}
        self.incoming: dict[str, _In] = {}
        self.staged: dict[str, Any] = {}  # received names (a user's objects), not yet committed
        self.modules: dict[str, str] = {}

    # -- talking back ------------------------------------------------------------------

    def _emit(self, data: dict[str, Any], buffers: Iterable[memoryview] = ()) -> None:
        k = self.kernel
        k.session.send(
            k.iopub_socket, "comm_msg", {"comm_id": COMM_ID, "data": data},
            parent=k.get_parent(), ident=b"comm-" + COMM_ID.encode(), buffers=list(buffers),
        )

    def _user_names(self) -> list[str]:
        ns, hidden = self.ip.user_ns, self.ip.user_ns_hidden
        marker = object()
        return sorted(
            name for name, value in ns.items()
            if not name.startswith("_") and hidden.get(name, marker) is not value
        )

    # -- both ends -----------------------------------------------------------------------

    def probe(self, gpu_libs: Iterable[str] = ()) -> None:
        """Python version, serializers, GPU availability for the named libraries, names in use."""
        gpu: dict[str, bool] = {}
        for lib in gpu_libs:
            try:
                if lib == "torch":
                    import torch

                    gpu[lib] = bool(torch.cuda.is_available())
                elif lib == "cupy":
                    import cupy

                    gpu[lib] = cupy.cuda.runtime.getDeviceCount() > 0
            except Exception:
                gpu[lib] = False
        import os
        import socket

        self._emit({
            "python": list(sys.version_info[:3]),
            "serializers": [s for s in SERIALIZERS if _available(s)],
            "gpu": gpu,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "names": sorted(self.ip.user_ns),
            "execution_count": self.ip.execution_count,
        })

    def uninstall(self) -> None:
        self.out.clear()
        self.incoming.clear()
        self.staged.clear()
        for ns in (self.ip.user_ns, self.ip.user_ns_hidden):
            if ns.get(NAME) is self:
                del ns[NAME]
        self._emit({"uninstalled": True})

    # -- the source ----------------------------------------------------------------------

    def _serialize(self, value: object, serializers: Iterable[str], keep_on_gpu: tuple[str, ...],
                   counting: bool) -> tuple[str, _RulesPickler, _Counter | io.BytesIO, list[pickle.PickleBuffer]]:
        """Pickle ``value`` with the first serializer that can: (serializer, pickler,
        sink, out-of-band buffers). Raises Refused with every serializer's reason."""
        reasons: list[str] = []
        for ser in serializers:
            sink: _Counter | io.BytesIO = _Counter() if counting else io.BytesIO()
            oob: list[pickle.PickleBuffer] = []

            def keep(buf: pickle.PickleBuffer, oob: list[pickle.PickleBuffer] = oob) -> bool:
                oob.append(buf)
                return False  # out of band: not copied into the stream

            try:
                p = _pickler_class(ser)(sink, buffer_callback=keep)
                p.keep_on_gpu = keep_on_gpu
                p.count_only = counting
                p.dump(value)
                return ser, p, sink, oob
            except ProcessBound:
                raise  # no serializer will move an open file or a lock
            except Refused as e:
                reasons.append(str(e))
            except RecursionError:
                reasons.append(f"{ser}: too deeply nested")
            except Exception as e:
                reasons.append(f"{ser}: {_reason(e)}")
        raise Refused("; ".join(reasons) or "cannot be serialised")

    def inventory(self, serializers: Iterable[str], max_bytes: int | None) -> None:
        """Every user name: its type, its serialised size, and whether it can move.

        Sizes come from pickling into a counter: large buffers (NumPy arrays, bytearrays)
        go out of band and are only measured, GPU tensors are only measured."""
        names: list[dict[str, Any]] = []
        for name in self._user_names():
            value = self.ip.user_ns[name]
            entry: dict[str, Any] = {"name": name, "type": _type_name(value), "size": None, "status": "move",
                     "reason": None, "serializer": None, "gpu": [], "gpu_libs": [], "module": None,
                     "process_bound": False}
            names.append(entry)
            if isinstance(value, types.ModuleType):
                entry.update(status="import", module=value.__name__)
                continue
            try:
                ser, p, sink, oob = self._serialize(value, serializers, (), True)
            except Refused as e:
                entry.update(status="skip", reason=str(e), process_bound=isinstance(e, ProcessBound))
                continue
            assert isinstance(sink, _Counter)  # counting (for mypy)
            entry["serializer"] = ser
            entry["size"] = sink.n + sum(memoryview(b).nbytes for b in oob) + p.gpu_bytes
            entry["gpu"] = p.converted
            entry["gpu_libs"] = sorted(p.gpu_libs)
            if max_bytes is not None and entry["size"] > max_bytes:
                entry.update(status="skip", reason=f"{entry['size']} bytes serialised, over the bound of "
                                                   f"{max_bytes} bytes (--max-bytes)")
        self._emit({"names": names, "execution_count": self.ip.execution_count})

    def pack(self, name: str, serializers: Iterable[str], keep_on_gpu: Iterable[str] = ()) -> None:
        """Serialise one name for sending; answer with its parts' sizes.

        GPU tensors of a library not in ``keep_on_gpu`` (the target has no GPU for it)
        become CPU ones."""
        value = self.ip.user_ns[name]
        ser, p, stream, oob = self._serialize(value, serializers, tuple(keep_on_gpu), False)
        assert isinstance(stream, io.BytesIO)  # not counting (for mypy)
        parts = [stream.getbuffer()]
        for buf in oob:
            try:
                parts.append(buf.raw())
            except BufferError:  # not contiguous: one copy
                parts.append(memoryview(bytes(memoryview(buf))))
        self.out[name] = _Out(parts)
        expected = _type_name(value)
        if p.converted and (type(value).__module__ or "").startswith("cupy"):
            expected = "numpy.ndarray"
        self._emit({"name": name, "serializer": ser, "sizes": [m.nbytes for m in parts],
                    "type": expected, "gpu": p.converted})

    def read(self, name: str, part: int, offset: int, size: int) -> None:
        """Send bytes [offset, offset+size) of one part (in order: the checksum runs along)."""
        out = self.out[name]
        if offset != out.pos[part]:
            raise ValueError(f"out-of-order read of {name!r} part {part}: {offset} != {out.pos[part]}")
        mv = out.parts[part].cast("B")[offset:offset + size]
        out.crc[part] = zlib.crc32(mv, out.crc[part])
        out.pos[part] = offset + mv.nbytes
        self._emit({"n": mv.nbytes}, [mv])

    def sent(self, name: str) -> None:
        """Checksums of what was sent; frees the serialised copy."""
        out = self.out.pop(name)
        self._emit({"name": name, "crcs": out.crc})

    def drop(self) -> None:
        self.out.clear()

    # -- the target ----------------------------------------------------------------------

    def expect(self, name: str, serializer: str, sizes: Sequence[int]) -> None:
        self.incoming[name] = _In(serializer, sizes, [])

    def write(self, name: str, part: int, offset: int) -> None:
        """Store the request's binary buffer at ``offset`` of one part."""
        buf = self.kernel.get_parent()["buffers"][0]
        inc = self.incoming[name]
        if offset != inc.pos[part]:
            raise ValueError(f"out-of-order write of {name!r} part {part}: {offset} != {inc.pos[part]}")
        mv = memoryview(buf).cast("B")
        inc.parts[part][offset:offset + mv.nbytes] = mv
        inc.crc[part] = zlib.crc32(mv, inc.crc[part])
        inc.pos[part] = offset + mv.nbytes

    def load(self, name: str) -> None:
        """Deserialise a received name into the staging area; answer with checksums and type."""
        inc = self.incoming.pop(name)
        complete = all(p == len(b) for p, b in zip(inc.pos, inc.parts))
        result = {"name": name, "crcs": inc.crc, "complete": complete, "type": None, "error": None}
        if complete:
            try:
                value = _loads(inc.serializer)(inc.parts[0], buffers=[pickle.PickleBuffer(b) for b in inc.parts[1:]])
                self.staged[name] = value
                result["type"] = _type_name(value)
            except Exception as e:
                result["error"] = _reason(e)
        self._emit(result)

    def import_modules(self, modules: dict[str, str]) -> None:
        """Import modules for names that were module objects in the source (name -> module)."""
        done: dict[str, str | None] = {}
        for name, module in modules.items():
            try:
                self.staged[name] = importlib.import_module(module)
                done[name] = None
            except Exception as e:
                done[name] = _reason(e)
        self._emit({"imports": done})

    def commit(self) -> None:
        """Move the staged names into the user namespace; answer with each one's type."""
        staged, self.staged = self.staged, {}
        self.ip.user_ns.update(staged)
        ns = self.ip.user_ns
        self._emit({"present": {name: (_type_name(ns[name]) if name in ns else None) for name in staged}})


def install() -> Agent:
    from IPython import get_ipython

    ip = get_ipython()
    agent = Agent(ip)
    ip.user_ns[NAME] = agent
    ip.user_ns_hidden[NAME] = agent
    return agent
