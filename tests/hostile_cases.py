"""The case table of issue 10: each hostile input run against the real CLI, with its exit
code and the line nbtui printed. Not collected by pytest; run by hand:

    python tests/hostile_cases.py            (as root for the second-user case)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakehttp import FakeHTTP  # noqa: E402
from tests.jupyter import JupyterServer, default_sigint  # noqa: E402

BASE = Path(tempfile.mkdtemp(prefix="nbtui-cases-"))
ROWS: list[tuple[str, int, str]] = []


def env_for(name: str) -> dict:
    cfg = BASE / name / "cfg"
    cfg.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, NBTUI_CONFIG=str(cfg), NBTUI_STATE_DIR=str(BASE / name / "state"),
                JUPYTER_RUNTIME_DIR=str(BASE / "none"), COLUMNS="200", NO_COLOR="1")


def nbtui(env, *args, input=None, timeout=90):
    t = time.monotonic()
    # Only the servers each case adds: other sessions' servers on this host stay out.
    args = (*args, "--no-discover") if args[:2] != ("servers", "add") else args
    r = subprocess.run([sys.executable, "-m", "nbtui", *args], env=env, capture_output=True,
                       input=input.encode() if input is not None else None, timeout=timeout, cwd=ROOT)
    r.wall = time.monotonic() - t
    out = r.stdout + r.stderr
    try:  # a raw byte that is no UTF-8 (an 8-bit CSI) is a raw control code too
        out.decode("utf-8")
        r.raw = False
    except UnicodeDecodeError:
        r.raw = True
    r.stdout = r.stdout.decode("utf-8", "backslashreplace")
    r.stderr = r.stderr.decode("utf-8", "backslashreplace")
    return r


def pick(r, needle=None) -> str:
    lines = (r.stdout + r.stderr).splitlines()
    if needle:
        lines = [x for x in lines if needle in x] or lines
    line = lines[0] if lines else ""
    raw = getattr(r, "raw", False) or any(c in r.stdout + r.stderr for c in "\x1b\x07\u202e\x9b")
    return ("RAW CONTROL CODES! " if raw else "") + line[:170]


def case(what: str, r, needle=None, note="") -> None:
    ROWS.append((what, r.returncode, pick(r, needle) + (f"  [{note}]" if note else "")))
    print(f"{r.returncode:>3}  {what}", file=sys.stderr)


def leftover(session: str, *argv, user=None, ignore_term=False):
    code = ("import signal,time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('ready', flush=True)\ntime.sleep(300)")
    cmd = [sys.executable, "-c", code, *argv]
    if user:
        cmd = ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, *argv]
    p = subprocess.Popen(cmd, env={"PATH": os.environ["PATH"], "JPY_PARENT_PID": "999999",
                                   "JPY_SESSION_NAME": session}, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    return p


def add(env, name, url, *extra):
    return nbtui(env, "servers", "add", name, url, *extra)


def main() -> None:
    procs = []
    srv = JupyterServer(BASE / "jupyter", name="named").start()
    try:
        for path in ("dir[/]x.ipynb", "report [red].ipynb", "two\nlines.ipynb"):
            srv.write_notebook(path)
            srv.create_session(path)
        e = env_for("named")
        e["TOK"] = srv.token
        add(e, "named", srv.url, "--token-env", "TOK")
        r = nbtui(e, "ls")
        case("session on `dir[/]x.ipynb` (ls)", r, "dir[")
        case("session on `report [red].ipynb` (ls)", r, "report")
        case("session on `two\\nlines.ipynb` (ls: one row)", r, "two")

        bomb = "/x/\x1b]0;pwned\x07\x1b[2J.ipynb"
        p = leftover(bomb, "--token=s3cr3t", "--password", "hunter2", "api_key=K3Y")
        procs.append(p)
        e2 = env_for("leftover")
        case("JPY_SESSION_NAME=$'/x/\\e]0;pwned\\a\\e[2J.ipynb' leftover: ls --orphans", nbtui(e2, "ls", "--orphans"),
             f"pid {p.pid}")
        case("same: kill pid:N --dry-run", nbtui(e2, "kill", f"pid:{p.pid}", "--dry-run"), "would kill")
        case("same: cull --orphans --dry-run", nbtui(e2, "cull", "--orphans", "--dry-run"), f"pid:{p.pid}")
        data = json.loads(nbtui(e2, "ls", "--json").stdout)
        cmdline = next(x["cmdline"] for x in data["processes"] if x["pid"] == p.pid)
        ROWS.append(("leftover argv `--token=s3cr3t --password hunter2 api_key=K3Y`: ls --json cmdline", 0,
                     cmdline[-60:]))

        with FakeHTTP("evil400") as bad:
            e3 = env_for("evil400")
            add(e3, "bad", bad.url, "--no-token")
            case("server answers HTTP 400 with message `bad \\e]0;pwned\\a\\e[2J [red]x[/]`: ls",
                 nbtui(e3, "ls"), "not read: server bad")
            case("same: servers test", nbtui(e3, "servers", "test"), "bad")
        with FakeHTTP("liar", kernels=[], user="eve\x1b]0;pwned\x07\u202e") as me:
            e4 = env_for("me")
            add(e4, "me", me.url, "--no-token")
            case("/api/me username `eve\\e]0;pwned\\a\\u202e`: servers test", nbtui(e4, "servers", "test"), "me:")

        kid = srv.create_session("victim.ipynb")["kernel"]["id"]
        with FakeHTTP("liar", kernels=[kid]) as liar:
            add(e, "liar", liar.url, "--no-token")
            data = json.loads(nbtui(e, "ls", "--json").stdout)
            rows = {k["server"]: k["pid"] for k in data["kernels"] if k["kernel_id"] == kid}
            r = nbtui(e, "kill", f"liar:{kid}", "--yes", "--grace", "1")
            alive = kid in {k["id"] for k in srv.kernels()}
            case(f"server `liar` lists named's kernel id: kill liar:ID --yes (pid on named {rows.get('named')}, "
                 f"on liar {rows.get('liar')}; named's kernel alive after: {alive})", r, "liar:")
            nbtui(e, "servers", "remove", "liar")

        e5 = env_for("links")
        state = Path(e5["NBTUI_STATE_DIR"])
        state.mkdir(mode=0o700)
        victim = BASE / "victim.txt"
        victim.write_text("precious\n")
        (state / "cull.lock").symlink_to(victim)
        case("cull.lock -> a file: cull --orphans --dry-run", nbtui(e5, "cull", "--orphans", "--dry-run"),
             note=f"target still {victim.read_text().strip()!r}")
        (state / "cull.lock").unlink()
        (state / "audit.jsonl").symlink_to(victim)
        case("audit.jsonl -> a file: kill pid:N --yes", nbtui(e5, "kill", f"pid:{p.pid}", "--yes"), "nbtui:",
             note=f"process alive: {p.poll() is None}")
        (state / "audit.jsonl").unlink()
        (state / "audit.jsonl").symlink_to(BASE / "dangling")
        case("audit.jsonl -> dangling: kill pid:N --yes", nbtui(e5, "kill", f"pid:{p.pid}", "--yes"), "nbtui:",
             note=f"dangling created: {(BASE / 'dangling').exists()}")
        e6 = dict(e5, NBTUI_STATE_DIR=str(victim / "state"))
        case("state folder not writable (a file in the way): kill pid:N --yes", nbtui(e6, "kill", f"pid:{p.pid}", "--yes"), "nbtui:",
             note=f"process alive: {p.poll() is None}")

        for mode in ("deep", "huge", "drip", "scheme", "badtypes"):
            with FakeHTTP(mode, size=600 << 20) as bad:
                e7 = env_for(mode)
                add(e7, "bad", bad.url, "--no-token", "--timeout", "10" if mode == "huge" else "3")
                r = nbtui(e7, "ls", "--json")
                err = next((s["error"] for s in json.loads(r.stdout)["servers"] if s["name"] == "bad"), None) \
                    if r.stdout.strip().startswith("{") else r.stderr
                ROWS.append((f"server `{mode}` (timeout {10 if mode == 'huge' else 3} s): ls --json", r.returncode, f"{err}  [{r.wall:.1f} s]"))
                if mode in ("drip", "badtypes"):
                    r = nbtui(e7, "servers", "test")
                    case(f"server `{mode}`: servers test", r, "bad", note=f"{r.wall:.1f} s")
        with FakeHTTP("ws-hang", kernels=["0badbeef-0000-4000-8000-000000000001"]) as hang:
            e8 = env_for("hang")
            add(e8, "hang", hang.url, "--no-token")
            r = nbtui(e8, "exec", "hang:0badbeef", "print(1)", "--timeout", "3")
            case("websocket never upgrades: exec --timeout 3", r, note=f"{r.wall:.1f} s")
        e9 = env_for("slowtok")
        e9["TOK"] = srv.token
        add(e9, "named", srv.url, "--token-env", "TOK")
        add(e9, "slow", "http://127.0.0.1:9/", "--token-cmd", "sleep 20", "--timeout", "2")
        r = nbtui(e9, "ls")
        case("--token-cmd 'sleep 20' (timeout 2): ls", r, "slow", note=f"{r.wall:.1f} s; named read: "
             f"{'named' in r.stdout}")

        e10 = env_for("secrets")
        case("servers add t http://u:PASSWORD@host/", add(e10, "t", "http://u:PASSWORD@127.0.0.1:9/", "--no-token"))
        (Path(e10["NBTUI_CONFIG"]) / "servers.toml").write_text(
            '[servers.t]\nurl = "http://127.0.0.1:9/"\ntoken = "tok-VALUE-123"\n')
        case('servers.toml `token = "tok-VALUE-123"`: ls', nbtui(e10, "ls"))
        (Path(e10["NBTUI_CONFIG"]) / "servers.toml").unlink()
        case("servers add pid http://127.0.0.1:9/", add(e10, "pid", "http://127.0.0.1:9/", "--no-token"))
        case("servers add t https://… --ca-bundle /nonexistent",
             add(e10, "t", "https://127.0.0.1:9/", "--no-token", "--ca-bundle", "/nonexistent"))
        os.mkfifo(Path(e10["NBTUI_CONFIG"]) / "config.toml")
        case("config.toml is a FIFO: ls", nbtui(e10, "ls", timeout=20))
        (Path(e10["NBTUI_CONFIG"]) / "config.toml").unlink()
        (Path(e10["NBTUI_CONFIG"]) / "config.toml").write_text("#" * (3 << 20))
        case("config.toml of 3 MiB: ls", nbtui(e10, "ls"))
        (Path(e10["NBTUI_CONFIG"]) / "config.toml").unlink()
        with ThreadPoolExecutor(10) as pool:
            rs = list(pool.map(lambda i: add(e10, f"s{i}", f"http://127.0.0.1:{9100 + i}/", "--no-token"), range(10)))
        n = len(json.loads(nbtui(e10, "servers", "list", "--json", "--no-discover").stdout)["servers"])
        ROWS.append(("ten concurrent servers add", max(r.returncode for r in rs), f"{n} entries kept"))

        stubborn = leftover("stubborn.ipynb", ignore_term=True)
        procs.append(stubborn)
        e11 = env_for("ctrlc")
        k = subprocess.Popen([sys.executable, "-m", "nbtui", "kill", f"pid:{stubborn.pid}", "--yes", "--grace", "30"],
                             env=e11, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
        audit = Path(e11["NBTUI_STATE_DIR"]) / "audit.jsonl"
        while not (audit.exists() and "intent" in audit.read_text()):
            time.sleep(0.1)
        time.sleep(1.0)
        k.send_signal(signal.SIGINT)
        out, err = k.communicate(timeout=30)
        time.sleep(1)
        results = [json.loads(x)["result"] for x in audit.read_text().splitlines()]
        ROWS.append(("ctrl+c 1 s into kill pid:N --grace 30 (a process ignoring SIGTERM)", k.returncode,
                     f"{err.strip().splitlines()[-1][:110]}  [alive after: {stubborn.poll() is None}; "
                     f"audit: {results}]"))

        if os.geteuid() == 0 and Path("/usr/bin/python3").exists():
            user = f"nbtui-t-{os.urandom(3).hex()}"
            subprocess.run(["useradd", "--no-create-home", user], check=True)
            try:
                q = leftover("/home/x/\x1b]52;c;ZXZpbA==\x07.ipynb", user=user)
                procs.append(q)
                case(f"second user {user}: leftover with OSC 52 in JPY_SESSION_NAME: ls --orphans",
                     nbtui(env_for("user"), "ls", "--orphans"), user)
                for c in __import__("psutil").Process(q.pid).children(recursive=True):
                    c.kill()
            finally:
                subprocess.run(["userdel", user])
        later_cases(procs)
    finally:
        for p in procs:
            p.kill()
        srv.stop()
    print("| input | exit | line printed |\n| --- | --- | --- |")
    for what, code, line in ROWS:
        print(f"| {what} | {code} | `{line.replace('|', '¦').replace('`', '´')}` |")


def _hub_user(name: str, *servers: str, **fields) -> dict:
    from urllib.parse import quote

    base = f"/user/{quote(name, safe='', errors='surrogatepass')}/"
    return {"name": name, "servers": {s: {"name": s, "ready": True, "url": base + (f"{quote(s, safe='')}/" if s else ""),
                                          "started": "2026-01-01T00:00:00Z", **fields} for s in servers}}


def later_cases(procs) -> None:
    """The cases the first 66 did not cover (issue 10, third round)."""
    import uuid

    # The re-check before kill and rebind meets a server that drips only then.
    kid = str(uuid.uuid4())
    k = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(300)",
                          "-f", str(BASE / f"kernel-{kid}.json")], stdout=subprocess.PIPE, text=True)
    k.stdout.readline()
    procs.append(k)
    with FakeHTTP("drip-recheck", kernels=[kid]) as bad:
        e = env_for("recheck")
        add(e, "bad", bad.url, "--no-token", "--timeout", "2")
        r = nbtui(e, "kill", f"bad:{kid}", "--yes", "--grace", "1")
        case("`drip-recheck` (timeout 2): kill bad:ID --yes (its process a child of the server's)", r, "failed",
             note=f"{r.wall:.1f} s; DELETE sent: {bool(bad.deleted)}; process alive: {k.poll() is None}")
        bad.httpd.listings = 0
        r = nbtui(e, "rebind", f"bad:{kid}", "--notebook", "again.ipynb")
        case("same: rebind bad:ID --notebook again.ipynb", r, "nbtui:",
             note=f"{r.wall:.1f} s; session asked: {any(d.startswith('POST') for d in bad.dripped)}")

    # A hostile hub: crafted names, odd shapes, endless or huge lists.
    alice, alice_x, mallory = (str(uuid.uuid4()) for _ in range(3))
    esc = "\x1b]0;pwned\x07\x1b[2J\u202e"
    users = [_hub_user("alice", "", "x"), _hub_user("alice/x", ""), _hub_user(f"eve{esc}", ""),
             _hub_user("bob:" + alice, "")]
    with FakeHTTP("hub", users=users, kernels_at={"/user/alice/": [alice], "/user/alice/x/": [alice_x],
                                                  "/user/alice%2Fx/": [mallory]}) as hub:
        e = env_for("hub")
        add(e, "hub", hub.url, "--hub", "--no-token", "--route", "proxy", "--timeout", "3")
        r = nbtui(e, "ls", "--json")
        names = sorted(s["name"] for s in json.loads(r.stdout)["servers"])
        ROWS.append(("hub users `alice` (servers '' and `x`), `alice/x`, `eve\\e]0;pwned…\\u202e`, "
                     "`bob:ALICE-ID`: ls --json server names", r.returncode, ", ".join(names)))
        case("same: ls (user alice/x's kernel row)",  # as another nbtui would (no proxy-reads.json yet)
             nbtui(dict(e, NBTUI_STATE_DIR=e["NBTUI_STATE_DIR"] + "-2"), "ls"), "alice%2Fx")
        r = nbtui(e, "kill", f"hub/alice/x:{mallory}", "--yes")
        case("same: kill hub/alice/x:MALLORYS-ID --yes (user alice/x's kernel)", r,
             note=f"DELETE sent: {bool(hub.deleted)}")
    for what, kw in (("`next` pointing at itself", dict(users=[_hub_user("alice", "")], pages="loop")),
                     ("`next` that never ends (timeout 2 s)", dict(pages="endless")),
                     ("100,000 users, each with a ready server (timeout 15 s)",
                      dict(users=[{"name": f"u{i}", "servers": {"": {"ready": True, "url": f"/user/u{i}/"}}}
                                  for i in range(100_000)])),
                     ("`servers` a list, not a dict", dict(users=[{"name": "bob", "servers": [{"ready": True}]}])),
                     ("`last_activity` of 4 MiB, `started` of 4 MiB of 9s",
                      dict(users=[_hub_user("alice", "", last_activity="2026-01-01T00:00:00." + "1" * (4 << 20) + "Z",
                                            started="9" * (4 << 20))]))):
        with FakeHTTP("hub", **kw) as hub:
            e = env_for("hub2")
            add(e, "hub", hub.url, "--hub", "--no-token", "--route", "proxy", "--replace",
                "--timeout", "15" if "100,000" in what else "2")
            r = nbtui(e, "ls", "--json")
            data = json.loads(r.stdout)
            row = next(s for s in data["servers"] if s["name"] == "hub")
            ROWS.append((f"hub user list: {what}: ls --json", r.returncode,
                         f"{row['status']}: {row['error']}; {len(data['servers']) - 1} user servers  [{r.wall:.1f} s]"))

    # Strings no UTF-8 stream can write.
    kid = str(uuid.uuid4())
    with FakeHTTP("liar", kernels=[kid], paths={kid: "a\ud800b\udc9b[2J.ipynb"}, user="eve\ud800") as bad:
        e = env_for("surrogates")
        add(e, "bad", bad.url, "--no-token")
        case("server JSON with lone surrogates (`\\ud800` in a path and a user name): ls", nbtui(e, "ls"), "bad")
        case("same: servers test", nbtui(e, "servers", "test"), "bad")
        case("same: kill bad:ID --dry-run", nbtui(e, "kill", f"bad:{kid}", "--dry-run"), "would")
    env_b = {b"PATH": os.environ["PATH"].encode(), b"JPY_PARENT_PID": b"999999",
             b"JPY_SESSION_NAME": b"/x/\xff\x9b[2J\xc2\x9b31m.ipynb"}
    q = subprocess.Popen([sys.executable.encode(), b"-c", b"import time; print('ready', flush=True); time.sleep(300)"],
                         env=env_b, stdout=subprocess.PIPE)
    q.stdout.readline()
    procs.append(q)
    case("leftover with JPY_SESSION_NAME=$'/x/\\xff\\x9b[2J\\xc2\\x9b31m.ipynb' (no UTF-8, 8-bit CSIs): ls --orphans",
         nbtui(env_for("bytes"), "ls", "--orphans"), f"pid {q.pid}")

    # The exporter's labels from a hostile hub user and notebook path.
    kid = str(uuid.uuid4())
    user = f"eve{esc}"
    path = 'x"} 1\nnbtui_up{server="forged"} 1\n\x1b]52;c;ZXZpbA==\x07.ipynb'
    from urllib.parse import quote

    base = f"/user/{quote(user, safe='')}/"
    with FakeHTTP("hub", users=[{"name": user, "servers": {"": {"ready": True, "url": base}}}],
                  kernels_at={base: [kid]}, paths={kid: path}) as hub:
        e = env_for("exporter")
        add(e, "hub", hub.url, "--hub", "--no-token", "--route", "proxy")
        log = BASE / "exporter.log"
        x = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "exporter", "--listen", "127.0.0.1:0",
                              "--per-kernel", "--refresh", "1"], env=e, cwd=ROOT, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT)
        try:
            import httpx

            deadline = time.monotonic() + 60
            body = b""
            while time.monotonic() < deadline and b"nbtui_kernel_info{" not in body:
                time.sleep(0.3)
                text = log.read_text()
                if "serving " in text:
                    body = httpx.get(text.split("serving ", 1)[1].split()[0], timeout=10).content
            line = next((x for x in body.decode("utf-8", "backslashreplace").splitlines()
                         if x.startswith("nbtui_kernel_info{")), "")
            raw = any(c in body.decode("utf-8", "replace") for c in "\x1b\x07\u202e")
            ROWS.append(("exporter --per-kernel: hub user `eve\\e]0;pwned…\\u202e`, notebook path with `\"}`, "
                         "newlines and OSC 52: /metrics", 0, ("RAW CONTROL CODES! " if raw else "") + line[:170]))
        finally:
            x.terminate()
            x.wait(30)


if __name__ == "__main__":
    main()
