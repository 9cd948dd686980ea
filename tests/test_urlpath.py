"""The one way an outside string enters a URL path (nbtui.jupyter.urlpath), and the client's
last guard: what climbs out of a server's URL is refused, what is merely odd is encoded."""

from __future__ import annotations

import pytest

from nbtui.jupyter.rest import ServerClient
from nbtui.jupyter.urlpath import UnsafeSegment, contents_path, segment, server_path


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "x\x1b]0;t\x07", "a\nb", "a\ud800"])
def test_what_cannot_be_one_segment_is_refused_naming_why(bad):
    with pytest.raises(UnsafeSegment) as e:
        segment(bad, "kernel id")
    assert "kernel id" in str(e.value) and "cannot be one URL path segment" in str(e.value)
    assert "\x1b" not in str(e.value) and "\n" not in str(e.value)  # the line shows it as text


def test_odd_but_single_segments_are_encoded_whole():
    assert segment("%2e%2e", "id") == "%252e%252e"
    assert segment("a b?c#d", "id") == "a%20b%3Fc%23d"
    assert segment("alice/x", "user name", named_by_hub=True) == "alice%2Fx"  # the hub's own name
    with pytest.raises(UnsafeSegment):
        segment("..", "user name", named_by_hub=True)


def test_contents_paths_are_checked_part_by_part():
    assert contents_path("work/a b.ipynb") == "work/a%20b.ipynb"
    for bad in ("/etc/passwd", "a/../b", "a//b", "../x.ipynb", "a/./b"):
        with pytest.raises(UnsafeSegment):
            contents_path(bad)


def test_a_hubs_server_url_may_not_climb_out():
    assert server_path("/user/alice%2Fx/", "url") == "/user/alice%2Fx/"
    for bad in ("/user/a/../../hub/api/", "/user/a/%2E%2e/", "user/a/"):
        with pytest.raises(UnsafeSegment):
            server_path(bad, "url")


async def test_the_client_refuses_a_dot_part_whoever_built_the_path():
    async with ServerClient("s", "http://127.0.0.1:9/user/alice/") as client:
        with pytest.raises(UnsafeSegment):
            await client.request("DELETE", "api/kernels/../../../bob/api/kernels/x")
        with pytest.raises(UnsafeSegment):
            client.ws_url("api/kernels/../x/channels")
