"""nbtui's own files, opened as root on a shared host could be attacked.

Another user (or a careless script) may leave a symlink where nbtui writes its state
(``audit.jsonl -> /etc/shadow``), a FIFO where it reads its config, or a huge file.
So every state and config file is opened here: never through a symlink (``O_NOFOLLOW``),
then checked on the open descriptor (a regular file with one link, owned by this user: a
hard link would let a write land in another file); folders are created 0700 and must be
real folders owned by this user that neither group nor others can write (where another
user can create files, they can plant ``audit.jsonl``); files are created 0600.
Each refusal is one :class:`UnsafeFile` line naming the path.

:func:`open_folder` walks a folder that another user's program names (adopt's connection
folder) from ``/`` one component at a time, never following a link.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from nbtui.core.errors import NbtuiError

MAX_CONFIG_BYTES = 1 << 20  # a config file over 1 MiB is not one a person wrote


class UnsafeFile(NbtuiError):
    """A state or config file that nbtui refuses to use; the message names it."""

    def __init__(self, path: os.PathLike | str, problem: str, exit_code: int | None = None):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}", exit_code)


def _owner_ok(st: os.stat_result, allow_root: bool = False) -> bool:
    euid = os.geteuid()
    return st.st_uid == euid or (allow_root and st.st_uid == 0)


def ensure_dir(path: os.PathLike | str) -> Path:
    """``path`` as a folder of this user's: created 0700 (with its parents) if missing;
    refused if it is a symlink, not a folder, or owned by someone else."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        try:
            missing = [p, *(a for a in p.parents if not os.path.lexists(a))]
            for folder in reversed(missing):  # each one 0700 (makedirs gives only the leaf its mode)
                try:
                    os.mkdir(folder, 0o700)
                except FileExistsError:
                    pass
            st = os.lstat(p)
        except OSError as e:
            raise UnsafeFile(p, f"cannot create the folder: {e.strerror or e}") from None
    except OSError as e:
        raise UnsafeFile(p, f"cannot read the folder: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(p, "is a symlink; nbtui keeps its files only in a real folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFile(p, "is not a folder")
    if not _owner_ok(st):
        raise UnsafeFile(p, f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})")
    check_private_folder(p, st)
    return p


def check_private_folder(path: os.PathLike | str, st: os.stat_result) -> None:
    """Refuse a state or config folder that group or others may write, sticky or not (the
    sticky bit stops nobody from creating a new file in it)."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = {0o022: "group and others", 0o020: "group", 0o002: "others"}[mode & 0o022]
        raise UnsafeFile(path, f"is writable by {who} (mode {mode:04o}), so another user could plant nbtui's "
                               f"files in it; fix: chmod go-w {path} (or use a private folder)")


def _check_fd(fd: int, path: os.PathLike | str, allow_root: bool = False) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, "is not a regular file")
    if not _owner_ok(st, allow_root):
        raise UnsafeFile(path, f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})")
    if st.st_nlink > 1:
        raise UnsafeFile(path, f"has {st.st_nlink} hard links; nbtui uses only a file with one "
                               "(a write through a link lands in another file)")
    return st


def open_fd(path: os.PathLike | str, flags: int, *, mode: int = 0o600, allow_root: bool = False) -> int:
    """``os.open`` of a state file without following a symlink, checked as a regular file
    of this user's. The caller closes the descriptor."""
    p = Path(path)
    if flags & os.O_CREAT:
        ensure_dir(p.parent)
    try:
        fd = os.open(p, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == 40:  # ELOOP: the last component is a symlink
            raise UnsafeFile(p, "is a symlink; nbtui does not write through one") from None
        raise
    try:
        _check_fd(fd, p, allow_root)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_line(path: os.PathLike | str, line: str) -> None:
    """Append one line (created 0600); raises OSError / UnsafeFile when it cannot."""
    fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        data = (line + "\n").encode("utf-8")
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def replace_file(path: os.PathLike | str, text: str, *, sync: bool = False) -> None:
    """Write ``text`` to a new 0600 file beside ``path`` (created O_EXCL, so never through a
    link) and rename it over ``path``: a reader sees the old file or the new one, never half,
    and a symlink planted at ``path`` is replaced, its target untouched."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _check_parent(path: Path, allow_root: bool) -> None:
    """The folder a config or state file was read from: this user's (or root's), and not one
    where another user could have put the file."""
    folder = path.parent
    try:
        st = os.stat(folder)
    except OSError as e:
        raise UnsafeFile(folder, f"cannot read the folder: {e.strerror or e}") from None
    if not _owner_ok(st, allow_root):
        raise UnsafeFile(folder, f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})")
    check_private_folder(folder, st)


def read_text(path: os.PathLike | str, limit: int = MAX_CONFIG_BYTES, *, allow_root: bool = True) -> str | None:
    """A config or state file's text (None when missing): not through a symlink, not a
    FIFO or device (opened non-blocking, so a FIFO cannot hang us), not over ``limit``
    bytes, owned by this user (or, with ``allow_root``, root)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == 40:
            raise UnsafeFile(p, "is a symlink; nbtui does not read through one") from None
        raise UnsafeFile(p, f"cannot read: {e.strerror or e}") from None
    try:
        st = _check_fd(fd, p, allow_root)
        _check_parent(p, allow_root)
        if st.st_size > limit:
            raise UnsafeFile(p, f"is {st.st_size:,} bytes; a config file is at most {limit:,}")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            total += len(b)
            if total > limit:
                raise UnsafeFile(p, f"is over {limit:,} bytes; a config file is at most {limit:,}")
            chunks.append(b)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnsafeFile(p, f"is not UTF-8 text (byte {e.start})") from None


# -- a folder another user's program names ---------------------------------------------------


def _uname(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _check_component(fd: int, here: str, allowed: set[int], last: bool) -> None:
    st = os.fstat(fd)
    if st.st_uid not in allowed:
        whose = " or ".join(_uname(u) for u in sorted(allowed))
        raise UnsafeFile(here, f"is owned by {_uname(st.st_uid)}, not by {whose}: that user could swap what "
                               "nbtui puts there")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = {0o022: "group and others", 0o020: "group", 0o002: "others"}[mode & 0o022]
        if last:
            raise UnsafeFile(here, f"is writable by {who} (mode {mode:04o}): another user could replace "
                                   "what nbtui puts there")
        if not mode & stat.S_ISVTX:
            raise UnsafeFile(here, f"is writable by {who} and not sticky (mode {mode:04o}): another user "
                                   "could swap the folder below it")


def _open_below(fd: int, name: str, here: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        if link:
            raise UnsafeFile(here, "is a symlink; nbtui does not follow one here") from None
        if e.errno == errno.ENOTDIR:
            raise UnsafeFile(here, "is not a folder") from None
        raise UnsafeFile(here, f"cannot open: {e.strerror or e}") from None


def open_folder(path: os.PathLike | str, owners: set[int], *,
                create: tuple[int, int] | None = None) -> tuple[int, list[str]]:
    """Open the absolute folder ``path`` walking from ``/`` one component at a time, each
    opened below the last with ``O_NOFOLLOW | O_DIRECTORY`` (a symlink anywhere on the way is
    refused, never followed), each checked on its descriptor:

    - owned by root or by a uid in ``owners``;
    - a folder that group or others may write is passed only when it is sticky (``/tmp``):
      then only its owner and the next folder's owner (checked in turn) can move that one;
    - the last folder, where the file goes, no one but its owner (and root) may write.

    Missing trailing folders: with ``create`` = (uid, gid) each is made 0700 and given to that
    owner; without, the walk stops at the deepest existing folder. Returns the descriptor of
    the deepest folder opened (the caller closes it) and the names still missing below it.
    """
    p = os.path.normpath(os.fspath(path))  # lexical ".." is safe: no component may be a link
    if not os.path.isabs(p):
        raise UnsafeFile(path, "is not an absolute path")
    parts = [c for c in p.split("/") if c]
    allowed = {0, *owners}
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = "/"
    try:
        _check_component(fd, here, allowed, last=not parts)
        for i, name in enumerate(parts):
            here = os.path.join(here, name)
            made = False
            try:
                nfd = _open_below(fd, name, here)
            except FileNotFoundError:
                if create is None:
                    return fd, parts[i:]
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass
                except OSError as e:
                    raise UnsafeFile(here, f"cannot create the folder: {e.strerror or e}") from None
                nfd = _open_below(fd, name, here)
            os.close(fd)
            fd = nfd
            if made and os.fstat(fd).st_uid != create[0]:  # type: ignore[index]
                os.fchown(fd, *create)  # type: ignore[misc]
            _check_component(fd, here, allowed, last=i == len(parts) - 1)
        return fd, []
    except BaseException:
        os.close(fd)
        raise
