"""model.evolve: the hot path's copy of a frozen model object is replace's copy."""

from __future__ import annotations

import datetime as dt
from dataclasses import FrozenInstanceError, replace

import pytest

from nbtui.core import model


def _kernel() -> model.Kernel:
    return model.Kernel("srv", "k-1", "python3", "idle", 2, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                        session=model.Session("s-1", "a/b.ipynb", "b.ipynb", "notebook"))


def test_evolve_gives_what_replace_gives_and_leaves_the_original():
    k = _kernel()
    changes = dict(own_connections=1, user="ana", process_user="root", orphan_reasons=("idle",),
                   usage=model.Usage("local", pid=7, memory_bytes=10))
    got = model.evolve(k, **changes)
    assert got == replace(k, **changes) and type(got) is model.Kernel
    assert got.key == "srv:k-1" and hash(got) == hash(replace(k, **changes))
    assert k.user is None and k.own_connections == 0  # the original is untouched
    with pytest.raises(FrozenInstanceError):
        got.user = "eve"  # type: ignore[misc]  # still frozen


def test_evolve_refuses_a_name_that_is_not_a_field_as_replace_does():
    with pytest.raises(TypeError, match="no field 'usr'"):
        model.evolve(_kernel(), usr="ana")
