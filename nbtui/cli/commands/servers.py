"""nbtui servers list|add|remove|test."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from nbtui.files import config as config_mod
from nbtui.files import secrets
from nbtui.cli.commands.common import check_names, load_config, open_fleet, print_json
from nbtui.core.errors import EXIT_OK, EXIT_PARTIAL, NotFound, UsageError
from nbtui.service.checks import discover
from nbtui.display.report import server_json
from nbtui.core.text import visible

if TYPE_CHECKING:
    from nbtui.core.model import ServerInfo, Snapshot
    from nbtui.service.fleet import Fleet

_T = TypeVar("_T")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="servers_command", metavar="ACTION", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="configured and discovered servers")
    ls.add_argument("--json", action="store_true")
    add = sub.add_parser("add", help="add a server (its token goes to the OS keyring)")
    add.add_argument("name")
    add.add_argument("url")
    tok = add.add_mutually_exclusive_group()
    tok.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    tok.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable at each use")
    tok.add_argument("--token-cmd", metavar="CMD", help="run CMD at each use (e.g. 'pass show jupyter/gpu1')")
    tok.add_argument("--no-token", action="store_true", help="the server needs no token")
    add.add_argument("--ca-bundle", metavar="PATH", help="CA certificates to verify the server's TLS")
    add.add_argument("--insecure-http", action="store_true", help="allow a token over plain http to a remote host")
    add.add_argument("--timeout", type=float, metavar="SECONDS", help="this server's timeout (default 5)")
    add.add_argument("--replace", action="store_true", help="replace a server of that name")
    add.add_argument("--hub", action="store_true",
                     help="a JupyterHub: read every user's servers with one token (a service token with a role)")
    add.add_argument("--route", choices=("auto", "direct", "proxy"),
                     help="hub only: reach users' servers at their internal targets (direct), through the "
                          "hub's proxy (marks them active), or direct where reachable (auto, the default)")
    add.add_argument("--proxy-interval", metavar="DURATION",
                     help="hub only: read a server through the proxy at most this often (default 15m)")
    rm = sub.add_parser("remove", help="forget a server and its keyring token")
    rm.add_argument("name")
    test = sub.add_parser("test", help="reachability, auth, version and latency of each server")
    test.add_argument("name", nargs="?")
    test.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "add": _add, "remove": _remove, "test": _test}[args.servers_command](args)


def _list(args: argparse.Namespace) -> int:
    config = load_config(args)
    found = discover() if not args.no_discover and config.settings.discover else None
    fleet = open_fleet(args, config, with_host=False)
    rows = []
    for name in fleet.names:
        c = fleet.config_of(name)
        rows.append({"name": c.name, "url": c.url, "source": "hub" if c.hub else c.source,
                     "token": c.token_source if c.source == "config" else "runtime file",
                     "pid": c.pid, "root_dir": c.root_dir})
    stale = list(found.stale) if found else []
    if args.json:
        print_json({"servers": rows, "stale_files": stale, "config_dir": str(config.folder)})
        return EXIT_OK
    if not rows:
        print("no servers: add one with `nbtui servers add NAME URL`, or run `nbtui demo`")
    for r in rows:
        extra = f"pid {r['pid']}" if r["pid"] else ""
        print(f"{visible(r['name']):<16} {r['source']:<10} {visible(r['url']):<36} token: {r['token']:<12} "
              f"{extra}".rstrip())
    for path in stale:
        print(f"stale runtime file (its server is gone): {visible(path)}")
    return EXIT_OK


def _read_token(args: argparse.Namespace) -> tuple[str, str | None]:
    """(token_source, token to store in the keyring or None)."""
    if args.no_token:
        return "none", None
    if args.token_env:
        return "env", None
    if args.token_cmd:
        return "cmd", None
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        token = getpass.getpass(f"token for {args.name} (not echoed): ").strip()
    else:
        raise UsageError("no token given: use --token-stdin, --token-env VAR, --token-cmd CMD or --no-token")
    if not token:
        raise UsageError("empty token")
    return "keyring", secrets.remember(token)


def _add(args: argparse.Namespace) -> int:
    folder = config_mod.config_dir(getattr(args, "config", None))
    config_mod.validate_url(args.url)  # refused before anything is read, locked or created
    problem = config_mod.name_problem(args.name)
    if problem:
        raise UsageError(f"bad server name {visible(args.name)!r}: {problem}")
    with config_mod.servers_lock(folder):
        return _add_locked(args)


def _add_locked(args: argparse.Namespace) -> int:
    config = config_mod.load(getattr(args, "config", None), creating=True)
    bad_ca = config_mod.check_ca_bundle(args.ca_bundle)
    if bad_ca:
        raise UsageError(f"bad --ca-bundle: {bad_ca}")
    if args.name in config.servers and not args.replace:
        raise UsageError(f"server {args.name} exists already in {config.servers_path} (use --replace)")
    url = config_mod.validate_url(args.url)
    if args.timeout is not None and not 0 < args.timeout < float("inf"):
        # servers.toml refuses it on load: saved, it would break every later command
        raise UsageError(f"bad --timeout {args.timeout:g}: expected a number of seconds above 0")
    if not args.hub and (args.route or args.proxy_interval):
        raise UsageError("--route and --proxy-interval are for a hub: add --hub")
    interval = None
    if args.proxy_interval is not None:
        from nbtui.core.units import parse_duration
        interval = parse_duration(args.proxy_interval, "--proxy-interval")
        if not interval > 0:
            raise UsageError("bad --proxy-interval: expected a duration above 0, e.g. 15m")
    hub_version = None if args.hub else _detect_hub(url, args.ca_bundle)
    source, token = _read_token(args)
    server = config_mod.ServerConfig(
        name=args.name, url=url, token_source=source, token_env=args.token_env, token_cmd=args.token_cmd,
        ca_bundle=args.ca_bundle, insecure_http=args.insecure_http, timeout=args.timeout,
        hub=args.hub, route=args.route or "auto", proxy_interval=interval,
    )
    from nbtui.service.checks import check_transport
    check_transport(args.name, url, source != "none", args.insecure_http)
    if token is not None:
        secrets.keyring_set(args.name, token)
    elif args.replace:
        secrets.keyring_delete(args.name)
    config_mod.save_servers(config_mod.with_server(config, server))
    made = config_mod.create_named_file(getattr(args, "config", None))
    if made is not None:
        print(f"created {visible(str(made))} (settings; servers are in {visible(str(config.servers_path))})")
    kind = " as a JupyterHub" if args.hub else ""
    print(f"added {args.name} ({url}){kind}; token: {source}; try `nbtui servers test {args.name}`")
    if hub_version:
        print(f"{url} answers as JupyterHub {visible(hub_version)}: to see every user's servers, add it "
              f"with --hub (nbtui servers add {args.name} {url} --hub --replace …)")
    return EXIT_OK


def _detect_hub(url: str, ca_bundle: Optional[str]) -> str | None:
    """The JupyterHub version if ``url``'s hub/api answers as a hub (a 2 s look), else None."""
    from nbtui.service.checks import detect_hub
    try:
        return detect_hub(url, timeout=2.0, ca_bundle=ca_bundle)
    except Exception:  # the add itself never fails on the look
        return None


def _remove(args: argparse.Namespace) -> int:
    with config_mod.servers_lock(config_mod.config_dir(getattr(args, "config", None))):
        return _remove_locked(args)


def _remove_locked(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.name not in config.servers:
        known = ", ".join(config.servers) or "none"
        raise NotFound(f"no configured server {args.name} (configured: {known})")
    server = config.servers.pop(args.name)
    config_mod.save_servers(config)
    if server.token_source == "keyring":
        secrets.keyring_delete(args.name)
    print(f"removed {args.name}")
    return EXIT_OK


async def _probe(fleet: Fleet, name: str) -> tuple[str | None, str | None]:
    """(who the server says we are, None), or (None, why it could not say)."""
    from nbtui.service.checks import me as who
    me, why = await who(fleet, name)
    if why is not None:
        return None, why
    ident = me.get("identity") if isinstance(me, dict) else None  # a server may answer any shape
    return identity_name(ident if isinstance(ident, dict) else {}), None


_ANONYMOUS = re.compile(r"^[0-9a-f]{32}$")


def identity_name(ident: dict) -> str:
    """Who the server says we are, stable across calls. A plain Jupyter Server with token
    auth makes up a new anonymous user (a random id, "Anonymous <moon>") for every request:
    that is no one, so it reads "anonymous"."""
    username = ident.get("username")
    name = ident.get("name") or ""
    if not isinstance(username, str) or not username or (
            _ANONYMOUS.match(username) and str(name).startswith("Anonymous ")):
        return "anonymous"
    return username


def identity(user: str | None, token_source: str, why: str | None = None) -> str:
    """`name (token auth)`: the identity and how nbtui proves it; `? (WHY; token auth)` when
    the server could not say who (``why``: `/api/me timed out after 10 s`)."""
    auth = "no auth" if token_source == "none" else "token auth"
    if not user and why:
        return f"? ({visible(why)}; {auth})"
    return f"{visible(user) if user else '?'} ({auth})"


async def _test_all(fleet: Fleet, names: list[str]) -> tuple[Snapshot, list[tuple[Optional[str], Optional[str]]]]:
    snap = await fleet.snapshot()
    # A hub's users' servers are the hub's users (no extra request through the proxy).
    users = await asyncio.gather(*(_probe(fleet, s.name) if s.ok and s.hub is None else _none((s.user, None))
                                   for s in snap.servers))
    await fleet.aclose()
    return snap, users


async def _none(value: _T) -> _T:
    return value


def _hub_facts(fleet: Fleet, s: ServerInfo) -> dict[str, Any] | None:
    """Scopes of a hub row's token and what each missing one costs (None for other rows)."""
    if s.source != "hub" or s.user is not None or s.name not in fleet.names:
        return None
    from nbtui.service.checks import missing_scopes
    hub = fleet.hub_of(s.name)
    scopes = hub.scopes or []
    return {"token_owner": {"kind": hub.kind, "name": hub.owner}, "scopes": sorted(scopes) if hub.scopes is not None else None,
            "missing_scopes": [{"scope": sc, "held": held, "cost": cost} for sc, held, cost in missing_scopes(scopes)]
            if hub.scopes is not None else []}


_USAGE_WORDS = {
    "local": "local (psutil/NVML on this host)",
    "extension": "extension (nbtui on the server's host)",
    "mixed": "mixed (local and extension)",
}


def _usage_words(s: ServerInfo) -> str:
    words = _USAGE_WORDS.get(s.usage_source, s.usage_source) if s.usage_source else "none"
    return f"{words} — {s.usage_note}" if s.usage_note else words


def _print_hub(snap: Snapshot, s: ServerInfo, facts: dict[str, Any]) -> None:
    mine = [x for x in snap.servers if x.hub == s.name and x.user is not None]
    proxied = [x for x in mine if x.route == "proxy"]
    direct = sum(1 for x in mine if x.route == "direct")
    pending = sum(1 for x in mine if x.pending)
    owner = facts["token_owner"]
    who = f"{owner['kind'] or 'token'} {visible(owner['name'] or '?')}"
    print(f"{visible(s.name)}: ok, JupyterHub {visible(s.version or '?')}, {s.latency_ms:.0f} ms, "
          f"{len(mine)} user server{'s' if len(mine) != 1 else ''}"
          f" ({direct} direct, {len(proxied)} through the proxy" + (f", {pending} pending" if pending else "")
          + f"), token of {who}")
    print(f"  scopes: {visible(', '.join(facts['scopes'] or []) or 'none')}")
    for m in facts["missing_scopes"]:
        what = "missing scope" if m["held"] == "missing" else "scope held only for some users:"
        print(f"  {what} {m['scope']}: {m['cost']}")
    if proxied:
        print(f"  {len(proxied)} server{'s' if len(proxied) != 1 else ''} "
              f"{visible(proxied[0].route_note or 'read through the proxy')}")


def _test(args: argparse.Namespace) -> int:
    config = load_config(args)
    fleet = open_fleet(args, config, acting=True)
    if args.name:
        check_names(fleet, [args.name])
        fleet = open_fleet(args, config, only=[args.name], acting=True)
    fleet.proxy_reader = None  # a test reads what was asked; the next `ls` is not held back by it
    snap, users = asyncio.run(_test_all(fleet, fleet.names))
    if args.json:
        out = []
        for s, (user, why) in zip(snap.servers, users):
            d = server_json(s)
            d["user"] = None if user == "anonymous" else user
            d["identity"] = identity(user, fleet.config_of(s.name).token_source, why) if s.ok else None
            d["identity_error"] = why if s.ok else None
            d["kernels"] = sum(1 for k in snap.kernels if k.server == s.name)
            d.update(_hub_facts(fleet, s) or {})
            out.append(d)
        print_json({"servers": out, "gpu_note": snap.gpu_note})
    else:
        if not snap.servers:
            print("no servers: add one with `nbtui servers add NAME URL`, or run `nbtui demo`")
        for s, (user, why) in zip(snap.servers, users):
            facts = _hub_facts(fleet, s)
            if facts is not None and s.ok:
                _print_hub(snap, s, facts)
            elif s.ok and s.pending:
                print(f"{visible(s.name)}: {s.pending} pending (the hub is "
                      f"{'starting' if s.pending == 'spawn' else 'stopping'} it)")
            elif s.ok:
                n = sum(1 for k in snap.kernels if k.server == s.name)
                route = f", route: {s.route}" if s.route else ""
                print(f"{visible(s.name)}: ok, Jupyter Server {visible(s.version or '?')}, {s.latency_ms:.0f} ms, "
                      f"{n} kernel{'s' if n != 1 else ''}, as {identity(user, fleet.config_of(s.name).token_source, why)}, "
                      f"usage: {visible(_usage_words(s))}{visible(route)}")
            else:
                print(f"{visible(s.name)}: {s.status}: " + visible((s.error or "").removeprefix(f"server {s.name}: ")))
        if snap.gpu_note:
            print(f"GPU: {visible(snap.gpu_note)}")
    return EXIT_PARTIAL if snap.failed_servers else EXIT_OK
