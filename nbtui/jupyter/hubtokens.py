"""Tokens that open one user's server and nothing else, minted through the hub's token API.

A hub user runs her single-user server: every header nbtui sends to it, she can read. So the
hub's own token (which lists users, stops servers, reads the proxy's routes) goes to the hub
only. Each user's server gets a token of that user's, made for it alone
(``POST /hub/api/users/{user}/tokens`` with scopes ``access:servers!server={user}/{server}``,
the hub's token needs scope ``tokens``), short-lived, held in memory only, and revoked when
nbtui is done with it. A server for which no such token can be had is not read: nbtui never
falls back to the hub's token.

The note starts with "Server at ", as the tokens the hub gives its servers do: the hub counts
the use of any other user token (each time the server checks it) as that user's activity,
which would move users' ``last_activity`` and defeat observing without disturbing.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from nbtui.jupyter.rest import AUTH_FAILED, SERVER_ERROR, ServerClient, ServerError
from nbtui.jupyter.urlpath import segment
from nbtui.files.secrets import remember


class UserServer(Protocol):
    """What a token is minted for (``nbtui.jupyter.hub.HubServer`` is one)."""

    @property
    def user(self) -> str: ...
    @property
    def server_name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def pending(self) -> Optional[str]: ...


LIFETIME = 3600  # seconds a minted token lives (the hub's token_expires_in_max_seconds may cap it)
RENEW_BEFORE = 600  # a token with less left than this is replaced before it is used again
RETRY_AFTER = 60.0  # a server whose token could not be minted is tried again after this
CONCURRENCY = 16  # mints (and revocations) sent to one hub at once: its shared pool's sockets (hub.SOCKETS)
REVOKE_DEADLINE = 1.5  # seconds the revocations at the end may take, all together, for a few tokens
REVOKE_EACH = 0.02  # … and this much more per token, up to the hub's own timeout (the rest expire)


@dataclass(frozen=True)
class Minted:
    token: str
    token_id: str
    user: str
    expires: float  # time.monotonic() when the hub stops honouring it


def scope_for(user: str, server_name: str) -> str:
    """The one scope a user's server is read with: access to that server and no other."""
    return f"access:servers!server={user}/{server_name}"


def _note(path: str) -> str:
    who = os.environ.get("USER") or str(os.geteuid())
    return (f"Server at {path} (read by nbtui, {who}@{socket.gethostname()} pid {os.getpid()}; "
            f"revoked when it ends)")


class TokenMint:
    """The tokens nbtui holds for one hub's users' servers, by (user, server name)."""

    def __init__(self, hub_name: str) -> None:
        self.hub_name = hub_name
        self._tokens: dict[tuple[str, str], Minted] = {}
        self._all: list[Minted] = []  # every token minted, replaced ones too: all are revoked at the end
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}  # why not, and when tried
        self._max_lifetime: Optional[int] = None  # the hub's cap, learnt from its refusal

    def token_for(self, user: str, server_name: str) -> Optional[str]:
        m = self._tokens.get((user, server_name))
        return m.token if m is not None and m.expires > time.monotonic() else None

    async def refused(self, client: ServerClient, user: str, server_name: str) -> None:
        """The server refused its token. Its user runs it, so it may refuse every one: the
        token is revoked now (not left for an hour in the hub) and the next is asked for only
        after ``RETRY_AFTER``, not at every refresh."""
        m = self._tokens.pop((user, server_name), None)
        self._failed[(user, server_name)] = (
            time.monotonic(), "its server refused the token minted for it; another is asked for in "
                              f"{RETRY_AFTER:g} s")
        if m is not None:
            self._all = [x for x in self._all if x is not m]
            await self._revoke([m], client)

    def _renew_before(self) -> float:
        """How long before its end a token is replaced: RENEW_BEFORE, or half its lifetime
        where the hub caps lifetimes below that (else every read would mint anew)."""
        return min(RENEW_BEFORE, min(LIFETIME, self._max_lifetime or LIFETIME) / 2)

    def why_none(self, user: str, server_name: str) -> str:
        failed = self._failed.get((user, server_name))
        if failed is not None:
            return failed[1]
        return "no token for it yet (the hub has not answered nbtui's request for one)"

    def _due(self, s: UserServer, now: float) -> bool:
        key = (s.user, s.server_name)
        m = self._tokens.get(key)
        if m is not None and m.expires - now > self._renew_before():
            return False
        failed = self._failed.get(key)
        return failed is None or now - failed[0] >= RETRY_AFTER

    async def ensure(self, client: ServerClient, servers: Sequence[UserServer], deadline: float) -> None:
        """Mint a token for every ready server that has none fresh, ``CONCURRENCY`` at a time,
        for ``deadline`` seconds at most as a whole: what is not minted by then is the next
        read's (its server says so meanwhile)."""
        now = time.monotonic()
        due = [s for s in servers if s.ready and not s.pending and self._due(s, now)]
        if not due:
            return
        # Every live one is revoked at the end; those the hub has expired already are not kept
        # (pruned once a batch: once a mint was quadratic, 500,000 looks for a hub of 1,000).
        self._all = [x for x in self._all if x.expires > now]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(s: UserServer) -> None:
            async with gate:
                await self._mint(client, s)

        try:
            await asyncio.wait_for(asyncio.gather(*(one(s) for s in due)), deadline)
        except asyncio.TimeoutError:
            pass

    async def _mint(self, client: ServerClient, s: UserServer) -> None:
        key = (s.user, s.server_name)
        try:
            lifetime = min(LIFETIME, self._max_lifetime or LIFETIME)
            body: dict[str, object] = {"scopes": [scope_for(s.user, s.server_name)], "note": _note(s.path),
                                       "expires_in": lifetime}
            path = f"hub/api/users/{segment(s.user, 'hub user name', named_by_hub=True)}/tokens"
            try:
                data = await client.request("POST", path, json_body=body)
            except ServerError as e:
                cap = _lifetime_cap(e)
                if cap is None:
                    raise
                self._max_lifetime = body["expires_in"] = lifetime = cap
                data = await client.request("POST", path, json_body=body)
        except ServerError as e:
            self._failed[key] = (time.monotonic(), _why(e, s))
            return
        except Exception as e:  # an UnsafeSegment user name, an odd answer: that server alone
            self._failed[key] = (time.monotonic(), str(e))
            return
        token, token_id = (data.get("token"), data.get("id")) if isinstance(data, dict) else (None, None)
        if not isinstance(token, str) or not token or not isinstance(token_id, str):
            self._failed[key] = (time.monotonic(), "the hub's answer to a token request had no token")
            return
        remember(token)  # scrubbed from any text from now on, read or not
        now = time.monotonic()
        m = Minted(token, token_id, s.user, now + lifetime)
        self._tokens[key] = m
        self._all.append(m)
        self._failed.pop(key, None)

    async def revoke_all(self, client: ServerClient) -> None:
        """Revoke every token minted (``DELETE /hub/api/users/{user}/tokens/{id}``), all
        together within ``REVOKE_DEADLINE`` (more for many, up to the hub's timeout); any left
        expire on their own."""
        minted, self._all, self._tokens = self._all, [], {}
        deadline = max(REVOKE_DEADLINE, min(client.timeout, REVOKE_EACH * len(minted)))
        await self._revoke(minted, client, deadline)

    async def _revoke(self, minted: list[Minted], client: ServerClient, deadline: float = REVOKE_DEADLINE) -> None:
        if not minted:
            return
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(m: Minted) -> None:
            async with gate:
                try:
                    await client.request("DELETE", f"hub/api/users/{segment(m.user, 'hub user name', named_by_hub=True)}/tokens/"
                                                   f"{segment(m.token_id, 'token id')}", expect_json=False)
                except Exception:
                    pass

        try:
            await asyncio.wait_for(asyncio.gather(*(one(m) for m in minted)), deadline)
        except asyncio.TimeoutError:
            pass


def _lifetime_cap(e: ServerError) -> Optional[int]:
    """The hub's token_expires_in_max_seconds, from its refusal of a longer lifetime."""
    m = re.search(r"must not exceed (\d+)", e.detail) if e.kind == SERVER_ERROR else None
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _why(e: ServerError, s: UserServer) -> str:
    if e.kind == AUTH_FAILED:
        return (f"the hub's token may not create a token for {s.user}'s server (scope tokens is needed); "
                f"nbtui never sends the hub's own token to a user's server")
    return f"could not get a token for this server from the hub: {e.detail}"
