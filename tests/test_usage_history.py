"""The detail pane's sparklines (nbtui.tui.usage_history): one sample per read for each
measured kernel, kept while the kernel is listed, gone with it."""

from __future__ import annotations

from nbtui.core.model import Kernel, Usage
from nbtui.display.table_rows import Row, kernel_row
from nbtui.tui.usage_history import History


def _k(kid: str, cpu: float | None = None, mem: int | None = None) -> Row:
    usage = None if cpu is None and mem is None else Usage(source="local", cpu_percent=cpu, memory_bytes=mem)
    return kernel_row(Kernel(server="s", kernel_id=kid, kernel_name="python3", state="idle", connections=0,
                             last_activity=None, usage=usage))


def test_a_kernel_keeps_its_samples_while_listed_and_loses_them_when_gone():
    h = History(length=3)
    h.add([_k("a", 10.0, 100), _k("b", 50.0, 200)])
    h.add([_k("a", 20.0, 100), _k("b")])  # b listed but not measured this time: its samples stay
    h.add([_k("a", 30.0, 100), _k("b"), _k("c", 5.0, 7)])
    h.add([_k("a", 40.0, 100), _k("c", 6.0, 7)])  # b is gone
    assert h.series("s:a", 0) == [20.0, 30.0, 40.0]  # the last three, oldest first
    assert h.series("s:b", 0) == []
    assert h.series("s:c", 1) == [7.0, 7.0]
    h.add([])
    assert h.series("s:a", 0) == [] and h.series("s:c", 0) == []


def test_a_measure_never_known_has_no_line():
    h = History()
    h.add([_k("a", None, 100)])
    h.add([_k("a", None, 120)])
    assert h.series("s:a", 0) == [] and h.series("s:a", 1) == [100.0, 120.0]


def test_a_server_that_lists_a_kernel_twice_does_not_keep_another_kernels_samples():
    h = History()
    h.add([_k("a", 1.0, 1), _k("gone", 2.0, 2)])
    h.add([_k("a", 1.0, 1), _k("a", 9.0, 9)])  # a liar's repeated id: one sample a read (either's)
    assert h.series("s:gone", 0) == []
    first, second = h.series("s:a", 0)
    assert first == 1.0 and second in (1.0, 9.0)
    h.add([_k("a", 1.0, 1)])  # one of the two gone: the kernel is still listed, its samples kept
    assert h.series("s:a", 0) == [1.0, second, 1.0]


def test_an_unchanged_kernel_still_adds_one_sample_per_read():
    # The fleet hands an unchanged kernel on as the very same object, its usage too: each
    # read is still a sample on the line, the last `length` of them kept.
    h = History(length=5)
    same = _k("a", 10.0, 100)
    for _ in range(3):
        h.add([same])
    assert h.series("s:a", 0) == [10.0, 10.0, 10.0]
    h.add([_k("a", 20.0, 100)])
    h.add([_k("a")])  # listed, not measured: no sample for this read
    h.add([same])
    assert h.series("s:a", 0) == [10.0, 10.0, 10.0, 20.0, 10.0]
    for _ in range(4):
        h.add([same])
    assert h.series("s:a", 0) == [10.0] * 5  # the last five reads, all of them the same sample
    h.add([_k("a", 30.0, 100)])
    assert h.series("s:a", 0) == [10.0] * 4 + [30.0]
    assert h.series("s:a", 1) == [100.0] * 5


def test_a_twin_s_sample_does_not_outlast_the_twin():
    # A server lists kernel a twice at one read, the twin with other usage; at the next reads a
    # is listed once, unchanged (the very row): its own usage is on the line again.
    h = History()
    a, twin = _k("a", 1.0, 1), _k("a", 9.0, 9)
    for rows in ([a], [twin, a], [a], [a], [a]):
        h.add(rows)
    line = h.series("s:a", 0)
    assert line[0] == 1.0 and line[1] in (1.0, 9.0) and line[2:] == [1.0, 1.0, 1.0]
