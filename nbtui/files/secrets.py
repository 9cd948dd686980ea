"""Tokens: where they come from (keyring, env var, command) and keeping them out of output.

Every token nbtui learns is remembered here so that :func:`redact` can scrub it from
any text before that text is shown, logged or written.
"""

from __future__ import annotations

import bisect
import os
import re
import shlex
import subprocess
from typing import TYPE_CHECKING, overload

from nbtui.core.errors import NbtuiError, UsageError

if TYPE_CHECKING:
    from nbtui.files.config import ServerConfig
SERVICE = "nbtui"
_known: set[str] = set()
_longest_first: list[str] = []  # _known, the longest first (a token inside another is replaced after it)


def _longer_first(token: str) -> int:
    return -len(token)


class TokenError(NbtuiError):
    """The token of a server could not be had."""


@overload
def remember(token: str) -> str: ...
@overload
def remember(token: None) -> None: ...
def remember(token: str | None) -> str | None:
    if token and len(token) >= 4 and token not in _known:
        _known.add(token)
        bisect.insort(_longest_first, token, key=_longer_first)  # kept in order: no sort per redact
    return token


def any_known_in(data: bytes) -> bool:
    """Whether a token nbtui has seen is in ``data`` (UTF-8): what needs :func:`redact`."""
    return any(token.encode() in data for token in _known)


def redact(text: str) -> str:
    """``text`` with every token nbtui has seen replaced by ``***``."""
    for token in _longest_first:
        if token in text:
            text = text.replace(token, "***")
    return text


_SECRET_ARG = re.compile(
    r"(?i)((?:token|passw(?:or)?d|secret|api[_-]?key|access[_-]?key|authorization)[\w.-]*"
    r"(?:\s*[:=]\s*|\s+))((?:(?:token|bearer|basic)\s+)?[^\s'\"]+)")


def redact_cmdline(cmdline: str) -> str:
    """A process's command line with secret arguments and every known token replaced by
    ``***``: ``--X.token=…``, ``--token …``, ``--password …``, ``api_key=…``,
    ``Authorization: token …`` (the same scrub on screen, in JSON, plans and the audit log)."""
    return redact(scrub_args(cmdline))


def scrub_args(cmdline: str) -> str:
    """``redact_cmdline``'s first half, which depends on nothing but the command line (a caller
    may keep it for a process's life): its secret arguments replaced by ``***``. Not safe to
    show until :func:`redact` has scrubbed the tokens known by then."""
    return _SECRET_ARG.sub(lambda m: m.group(1) + "***", cmdline)


def _no_backend_message() -> str:
    return (
        "no working OS keyring backend here (usual over SSH): use --token-env VAR or "
        "--token-cmd CMD instead; nbtui never stores tokens in plain files"
    )


def keyring_set(name: str, token: str) -> None:
    import keyring
    import keyring.errors

    try:
        keyring.set_password(SERVICE, name, token)
    except keyring.errors.NoKeyringError:
        raise UsageError(_no_backend_message()) from None
    except keyring.errors.KeyringError as e:
        raise UsageError(f"keyring refused the token: {redact(str(e)) or type(e).__name__}") from None


def keyring_get(name: str) -> str | None:
    import keyring
    import keyring.errors

    try:
        return remember(keyring.get_password(SERVICE, name))
    except keyring.errors.NoKeyringError:
        raise TokenError(f"server {name}: token is in the keyring, but {_no_backend_message()}") from None
    except keyring.errors.KeyringError as e:
        raise TokenError(f"server {name}: keyring error: {type(e).__name__}") from None


def keyring_delete(name: str) -> None:
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(SERVICE, name)
    except (keyring.errors.PasswordDeleteError, keyring.errors.KeyringError):
        pass


def run_token_cmd(cmd: str, name: str = "?", timeout: float = 30.0) -> str:
    """Run ``cmd`` (like ``pass show jupyter/gpu1``) and return its first output line."""
    try:
        out = subprocess.run(
            shlex.split(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, ValueError) as e:
        raise TokenError(f"server {name}: token command failed: {e.__class__.__name__}: {e}") from None
    except subprocess.TimeoutExpired:
        raise TokenError(f"server {name}: token command took over {timeout:g} s") from None
    if out.returncode != 0:
        raise TokenError(f"server {name}: token command exited {out.returncode}")
    token = out.stdout.strip().splitlines()[0].strip() if out.stdout.strip() else ""
    if not token:
        raise TokenError(f"server {name}: token command printed nothing")
    return remember(token)


def resolve(server: ServerConfig, timeout: float = 30.0) -> str | None:
    """The token for a :class:`nbtui.files.config.ServerConfig`, or None for none (a token
    command gets ``timeout`` seconds)."""
    src = server.token_source
    if server.token:
        return remember(server.token)
    if src in ("none", "discovered", "hub"):  # "hub": a user's server gets its hub's token, and that hub has none
        return None
    if src == "env":
        token = os.environ.get(server.token_env or "")
        if not token:
            raise TokenError(f"server {server.name}: environment variable {server.token_env} is not set")
        return remember(token)
    if src == "cmd":
        return run_token_cmd(server.token_cmd or "", server.name, timeout)
    token = keyring_get(server.name)
    if token is None:
        raise TokenError(f"server {server.name}: no token in the keyring (nbtui servers add {server.name} … --replace)")
    return token
