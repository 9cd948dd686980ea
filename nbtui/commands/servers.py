"""nbtui servers list|add|remove|test."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from nbtui import config as config_mod
from nbtui import secrets
from nbtui.commands.common import check_names, load_config, open_fleet, print_json
from nbtui.errors import EXIT_OK, EXIT_PARTIAL, NotFound, UsageError
from nbtui.jupyter.discovery import discover
from nbtui.report import server_json
from nbtui.text import visible


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
    rm = sub.add_parser("remove", help="forget a server and its keyring token")
    rm.add_argument("name")
    test = sub.add_parser("test", help="reachability, auth, version and latency of each server")
    test.add_argument("name", nargs="?")
    test.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "add": _add, "remove": _remove, "test": _test}[args.servers_command](args)


def _list(args) -> int:
    config = load_config(args)
    found = discover() if not args.no_discover and config.settings.discover else None
    fleet = open_fleet(args, config, with_host=False)
    rows = []
    for name in fleet.names:
        c = fleet.config_of(name)
        rows.append({"name": c.name, "url": c.url, "source": c.source,
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


def _read_token(args) -> tuple[str, str | None]:
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


def _add(args) -> int:
    folder = config_mod.config_dir(getattr(args, "config", None))
    config_mod.validate_url(args.url)  # refused before anything is read or locked
    with config_mod.servers_lock(folder):
        return _add_locked(args)


def _add_locked(args) -> int:
    config = load_config(args)
    problem = config_mod.name_problem(args.name)
    if problem:
        raise UsageError(f"bad server name {visible(args.name)!r}: {problem}")
    bad_ca = config_mod.check_ca_bundle(args.ca_bundle)
    if bad_ca:
        raise UsageError(f"bad --ca-bundle: {bad_ca}")
    if args.name in config.servers and not args.replace:
        raise UsageError(f"server {args.name} exists already in {config.servers_path} (use --replace)")
    url = config_mod.validate_url(args.url)
    if args.timeout is not None and not 0 < args.timeout < float("inf"):
        # servers.toml refuses it on load: saved, it would break every later command
        raise UsageError(f"bad --timeout {args.timeout:g}: expected a number of seconds above 0")
    source, token = _read_token(args)
    server = config_mod.ServerConfig(
        name=args.name, url=url, token_source=source, token_env=args.token_env, token_cmd=args.token_cmd,
        ca_bundle=args.ca_bundle, insecure_http=args.insecure_http, timeout=args.timeout,
    )
    from nbtui.jupyter.rest import check_transport

    check_transport(args.name, url, source != "none", args.insecure_http)
    if token is not None:
        secrets.keyring_set(args.name, token)
    elif args.replace:
        secrets.keyring_delete(args.name)
    config_mod.save_servers(config_mod.with_server(config, server))
    print(f"added {args.name} ({url}); token: {source}; try `nbtui servers test {args.name}`")
    return EXIT_OK


def _remove(args) -> int:
    with config_mod.servers_lock(config_mod.config_dir(getattr(args, "config", None))):
        return _remove_locked(args)


def _remove_locked(args) -> int:
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


async def _probe(fleet, name):
    from nbtui.jupyter.rest import ServerError

    try:
        client = fleet.client(name)
        me = await client.me()
    except ServerError:
        return None
    ident = me.get("identity") if isinstance(me, dict) else None
    if not isinstance(ident, dict):
        return None
    user = ident.get("username") or ident.get("name")
    return user if isinstance(user, str) else None


async def _test_all(fleet, names):
    snap = await fleet.snapshot()
    users = await asyncio.gather(*(_probe(fleet, s.name) if s.ok else _none() for s in snap.servers))
    await fleet.aclose()
    return snap, users


async def _none():
    return None


_USAGE_WORDS = {
    "local": "local (psutil/NVML on this host)",
    "extension": "extension (nbtui on the server's host)",
    "mixed": "mixed (local and extension)",
}


def _usage_words(s) -> str:
    words = _USAGE_WORDS.get(s.usage_source, s.usage_source) if s.usage_source else "none"
    return f"{words} — {s.usage_note}" if s.usage_note else words


def _test(args) -> int:
    config = load_config(args)
    fleet = open_fleet(args, config)
    if args.name:
        check_names(fleet, [args.name])
        fleet = open_fleet(args, config, only=[args.name])
    snap, users = asyncio.run(_test_all(fleet, fleet.names))
    if args.json:
        out = []
        for s, user in zip(snap.servers, users):
            d = server_json(s)
            d["user"] = user
            d["kernels"] = sum(1 for k in snap.kernels if k.server == s.name)
            out.append(d)
        print_json({"servers": out, "gpu_note": snap.gpu_note})
    else:
        if not snap.servers:
            print("no servers: add one with `nbtui servers add NAME URL`, or run `nbtui demo`")
        for s, user in zip(snap.servers, users):
            if s.ok:
                n = sum(1 for k in snap.kernels if k.server == s.name)
                print(f"{visible(s.name)}: ok, Jupyter Server {visible(s.version or '?')}, {s.latency_ms:.0f} ms, "
                      f"{n} kernel{'s' if n != 1 else ''}, user {visible(user or '?')}, "
                      f"usage: {visible(_usage_words(s))}")
            else:
                print(f"{visible(s.name)}: {s.status}: " + visible((s.error or "").removeprefix(f"server {s.name}: ")))
        if snap.gpu_note:
            print(f"GPU: {visible(snap.gpu_note)}")
    return EXIT_PARTIAL if snap.failed_servers else EXIT_OK
