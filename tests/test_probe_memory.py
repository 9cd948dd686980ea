"""The memory of a hub's servers' probes (nbtui.files.probe_memory) is root's own file: a link
planted in its place is never read or written through, a damaged or forged file is ignored
and replaced, and a restarted server (a new ``started``) is a key of its own."""

from __future__ import annotations

import json
import os

from nbtui.files.probe_memory import Probed, ProbeMemory, probe_key


def test_a_planted_link_is_not_followed_and_a_damaged_file_costs_only_the_memory(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_text("precious")
    (state / "probes.json").symlink_to(target)
    key = probe_key("hub", "http://h/user/ana/", "2026-12-01T10:00:00Z")
    memory = ProbeMemory(state / "probes.json")
    assert memory.get(key) is None  # the link is not read through
    memory.put(key, Probed(version="2.17.0", version_asked=True, terminals_off=False, no_extension=True))
    memory.save()
    assert target.read_text() == "precious"  # the link was replaced, its target untouched
    assert not (state / "probes.json").is_symlink()
    assert oct(os.stat(state / "probes.json").st_mode & 0o777) == "0o600"
    again = ProbeMemory(state / "probes.json").get(key)
    assert again == Probed(version="2.17.0", version_asked=True, terminals_off=False, no_extension=True)

    # A forged entry (a version that is no short string, flags that are not booleans) is dropped.
    (state / "probes.json").write_text(json.dumps({"servers": {
        key: {"version": "\x1b]0;x\x07" * 50, "version_asked": True, "terminals_off": False, "no_extension": True},
        "other": {"version": None, "version_asked": "yes", "terminals_off": False, "no_extension": False}}}))
    assert ProbeMemory(state / "probes.json").get(key) is None
    assert ProbeMemory(state / "probes.json").get("other") is None
    (state / "probes.json").write_text("{not json")
    assert ProbeMemory(state / "probes.json").get(key) is None


def test_a_server_started_again_is_a_server_of_its_own():
    a = probe_key("hub", "http://h/user/ana/", "2026-12-01T10:00:00Z")
    assert a != probe_key("hub", "http://h/user/ana/", "2026-12-02T10:00:00Z")
    assert a != probe_key("other", "http://h/user/ana/", "2026-12-01T10:00:00Z")
    assert probe_key("hub", "http://h/user/ana/", None) is None  # no start time: nothing kept
