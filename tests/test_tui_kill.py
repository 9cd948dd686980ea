"""Kill and cull on the fleet screen, against a real server, through App.run_test()."""

from __future__ import annotations

import datetime as dt

from textual.app import App

from nbtui.files import audit
from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.core.model import GpuUse, Kernel, ServerInfo, Session, Snapshot, Usage
from nbtui.service.actions.kill import Step, plan_kernel
from nbtui.tui.app import NbtuiApp
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.screens.kill import CullScreen, KillConfirm, plan_lines
from tests.jupyter import until


def make_app(server, **kw) -> NbtuiApp:
    fleet = Fleet([ServerConfig(name="srv", url=server.url, token_source="discovered", token=server.token,
                                timeout=2.0)], Settings(timeout=2.0))
    return NbtuiApp(fleet, refresh=0.3, **kw)



def lines_of(screen: ConfirmScreen) -> str:
    return "\n".join(screen.lines)


async def test_k_confirms_with_the_plan_and_kills_only_on_yes(jupyter):
    jupyter.write_notebook("keep.ipynb")
    keep = jupyter.create_session("keep.ipynb")["kernel"]["id"]
    bare = jupyter.start_kernel()
    app = make_app(jupyter)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: len(screen.table.order) == 2, what="both kernels")
        assert screen.select(f"srv:{bare}")
        await until(pilot, lambda: screen.selected_kernel and screen.selected_kernel.orphan_reasons,
                    what="the orphan under the cursor")
        await pilot.press("k")
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, what="the modal")
        assert modal.title_text == "Kill 1 kernel?"
        assert f"kernel srv:{bare[:8]}  (no session)" in lines_of(modal)
        assert "no session (no notebook or console) refers to it" in lines_of(modal)
        await pilot.press("enter")  # the default is No
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the modal to close")
        assert {k["id"] for k in jupyter.kernels()} == {keep, bare}
        assert not audit.audit_path().exists()

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the modal again")
        await pilot.press("y")
        await until(pilot, lambda: f"srv:{bare}" not in screen.table.order, what="the row to go")
        assert {k["id"] for k in jupyter.kernels()} == {keep}
        notes = [n.message for n in app._notifications]
        assert any(m.startswith("killed 1") for m in notes), notes


async def test_cull_from_the_palette_takes_what_the_policy_selects(jupyter):
    jupyter.write_notebook("keep.ipynb")
    keep = jupyter.create_session("keep.ipynb")["kernel"]["id"]
    bare = jupyter.start_kernel()
    app = make_app(jupyter)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: len(screen.table.order) == 2, what="both kernels")
        screen.action_cull()
        dialog = await until(pilot, lambda: isinstance(app.screen, CullScreen) and app.screen, what="the dialog")
        dialog.query_one("#cull-idle").value = "2hrs"
        await pilot.press("enter")
        error = dialog.query_one("#cull-error")
        # The error line grows the dialog and moves its buttons down: click only once the layout
        # has it (the region a click aims at), or a click on a loaded machine lands on the error.
        await until(pilot, lambda: "90s, 30m, 2h, 1d" in str(error.render()) and error.size.height > 0,
                    what="the accepted forms")
        dialog.query_one("#cull-idle").value = ""
        assert await pilot.click("#cull-orphans"), "the click missed the orphans box"
        assert await pilot.click("#plan"), "the click missed the plan button"
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, what="the plan")
        assert modal.title_text == "Cull 1?" and bare[:8] in lines_of(modal) and keep[:8] not in lines_of(modal)
        await pilot.press("y")
        await until(pilot, lambda: f"srv:{bare}" not in screen.table.order, what="the culled row to go")
    assert {k["id"] for k in jupyter.kernels()} == {keep}
    assert [line for line in audit.audit_path().read_text().splitlines() if '"cull"' in line]


def _recorded_step() -> Step:
    """A kernel on a remote server as a recorded snapshot shows it (no local processes)."""
    now = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
    k = Kernel(server="gpu1", kernel_id="80442938-5f1c-4c3e-9a57-0d1f3b2a9c11", kernel_name="python3",
               state="idle", connections=0, last_activity=now - dt.timedelta(hours=5),
               session=Session("s1", "ana/train-resnet.ipynb", "train-resnet.ipynb", "notebook"),
               usage=Usage(source="extension", pid=4531, memory_bytes=3 * 1024 ** 3,
                           gpu_memory_bytes=12 * 1024 ** 3, gpus=(GpuUse(0, "GPU-1", 12 * 1024 ** 3),)),
               orphan_reasons=("disconnected-idle",))
    snap = Snapshot(generated_at=now, servers=(ServerInfo("gpu1", "https://gpu1:8888/", "config"),), kernels=(k,))
    return plan_kernel(snap, k)


class _Modal(App):
    def on_mount(self) -> None:
        steps = [_recorded_step()]
        self.push_screen(KillConfirm("Kill 1 kernel?", plan_lines(steps, me="ana"), "Kill"))


def test_kill_confirmation_snapshot(snap_compare, still_clock):
    still_clock(dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc))  # the recorded step's moment: idle 5h
    assert snap_compare(_Modal(), terminal_size=(100, 20))


class OnlyFrom:
    """The real host view, scoped to one (crashed) server's processes: other tests' leftovers
    on this shared machine are none of this test's business."""

    def __init__(self, host, server_pid: int):
        self.host, self.server_pid = host, server_pid

    def sample(self, servers, kernels, terminals=()):
        from dataclasses import replace

        s = self.host.sample(servers, kernels)
        return replace(s, processes=tuple(p for p in s.processes if p.server_pid == self.server_pid))


async def test_leftovers_of_a_crashed_server_are_counted_and_killed_from_the_palette(jupyter_factory):
    import psutil

    from nbtui.host.local import LocalHost
    from tests.test_kill import gone, spawn_child
    from tests.jupyter import wait_for, until

    crashed = jupyter_factory("crashed")
    kid = crashed.create_session("gpu.ipynb")["kernel"]["id"]
    child = spawn_child(crashed, kid)
    kernel_pid = crashed.kernel_pid(kid)
    crashed.kill_hard()
    wait_for(lambda: gone(kernel_pid), 30, what="the kernel to follow its server")
    fleet = Fleet([], Settings(timeout=2.0), host=OnlyFrom(LocalHost(Settings()), crashed.pid))
    app = NbtuiApp(fleet, refresh=0.3)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: screen.snapshot and any(p.pid == child for p in screen.snapshot.processes),
                    what="the leftover child listed")
        assert "leftover" in str(screen.query_one("#summary").render())
        screen.action_kill_leftovers()
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, what="the modal")
        assert f"• pid {child}" in lines_of(modal) and "gpu.ipynb" in lines_of(modal)
        await pilot.press("y")
        await until(pilot, lambda: gone(child), what="the child to be gone")
    assert not psutil.pid_exists(child) or gone(child)
