"""`migrate pid:N` (a kernel whose server is gone) carries the notebook file it was started
for from this host, or says plainly that none comes along (pure code: files only; the move
itself is in test_migrate_adopt)."""

from __future__ import annotations

import json

from nbtui.migrate import notebook


def test_the_local_file_is_read_as_the_contents_api_answers_it(tmp_path):
    f = tmp_path / "lost.ipynb"
    f.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {},
                                        "outputs": [{"output_type": "stream", "name": "stdout", "text": ["x\n", "y"]}],
                                        "execution_count": 1}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    model, why = notebook.read_local(str(f))
    assert why is None and model["type"] == "notebook" and model["size"] == f.stat().st_size
    cell = model["content"]["cells"][0]
    assert cell["source"] == "a = 1\nb = 2" and cell["outputs"][0]["text"] == "x\ny"  # joined, as the server answers
    p = notebook.NotebookPlan(notebook.COPY, "moved.ipynb", "home", str(f), None, bytes=model["size"], local=True)
    assert p.line() == f"notebook file: copy {f} on this host to moved.ipynb on home ({model['size']} bytes)"


def test_no_file_to_carry_is_said_plainly(tmp_path):
    (tmp_path / "bad.ipynb").write_text("{not json")
    (tmp_path / "script.py").write_text("x = 1")
    cases = {
        None: "the process names no notebook file: it has no JPY_SESSION_NAME",
        str(tmp_path / "gone.ipynb"): f"no file {tmp_path / 'gone.ipynb'} on this host",
        str(tmp_path / "bad.ipynb"): f"{tmp_path / 'bad.ipynb'} on this host is not notebook JSON",
        str(tmp_path / "script.py"): f"{tmp_path / 'script.py'} on this host is not a notebook",
    }
    for path, why in cases.items():
        assert notebook.read_local(path) == (None, why)
    p = notebook.NotebookPlan(notebook.CREATE, "moved.ipynb", "home", None, None, local=True, note=cases[None])
    assert p.line() == ("notebook file: none comes along (the process names no notebook file: it has no "
                        "JPY_SESSION_NAME); an empty notebook at moved.ipynb on home")
    assert p.to_json()["note"] == cases[None] and p.to_json()["action"] == "create"


def test_another_users_kernel_brings_only_its_own_file(tmp_path):
    """The path is the kernel's JPY_SESSION_NAME, its owner's choice: as root nbtui reads no
    symlink there and no file of another user's (root's notebook never goes into their server)."""
    import os
    import pwd

    secret = tmp_path / "secret.ipynb"
    secret.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    link = tmp_path / "mine.ipynb"
    link.symlink_to(secret)
    me = os.geteuid()
    assert notebook.read_local(str(link), me) == (None, f"{link} on this host is a symlink; nbtui does not "
                                                        "read through one")
    other = next(u for u in range(60000, 70000) if u != me)
    try:
        theirs = pwd.getpwuid(other).pw_name
    except KeyError:
        theirs = f"uid {other}"
    assert notebook.read_local(str(secret), other) == (
        None, f"{secret} on this host is owned by {pwd.getpwuid(me).pw_name}, not by the kernel's owner {theirs}")
    assert notebook.read_local(str(secret), me)[0]["type"] == "notebook"
