"""Output directories are all or nothing."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from prunec.errors import UserError
from prunec.interrupts import catching_interrupts
from prunec.outdir import atomic_directory, check_writable, check_writable_file


def test_success_moves_into_place(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("new")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_leaves_nothing_and_keeps_previous(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    (target / "report.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt), atomic_directory(target, force=True) as staging:
        (staging / "a.txt").write_text("half")
        raise KeyboardInterrupt
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_force_never_replaces_foreign_directories(tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a prunec output"), atomic_directory(foreign, force=True):
        pass
    monkeypatch.chdir(foreign)
    with pytest.raises(UserError, match="working directory"), atomic_directory(".", force=True):
        pass
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_existing_needs_force(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "report.json").write_text("{}")
    with pytest.raises(UserError, match="--force"), atomic_directory(target):
        pass
    with atomic_directory(target, force=True) as staging:
        (staging / "b").write_text("x")
    assert (target / "b").exists()
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)


def test_missing_parents_are_created_but_a_file_in_the_way_is_an_error(tmp_path):
    with atomic_directory(tmp_path / "a" / "b" / "out") as staging:
        (staging / "x").write_text("x")
    assert (tmp_path / "a" / "b" / "out" / "x").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"), atomic_directory(tmp_path / "file" / "out"):
        pass


def test_the_early_check_creates_no_folder_and_a_failed_write_removes_those_it_made(tmp_path):
    """compile checks -o before hours of work: a run that then fails leaves no empty folders behind."""
    check_writable(tmp_path / "a" / "b" / "out", force=False)
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "a" / "b" / "out"):
        assert (tmp_path / "a" / "b").is_dir()
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()  # a folder that was there before stays, and so does anything put beside
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "keep" / "new" / "out"):
        raise RuntimeError("the run failed")
    assert [p.name for p in tmp_path.iterdir()] == ["keep"] and list((tmp_path / "keep").iterdir()) == []
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        if not os.access(tmp_path / "ro", os.W_OK) or os.geteuid() != 0:
            with pytest.raises(UserError, match="not writable"):
                check_writable(tmp_path / "ro" / "x" / "out", force=False)
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_interrupt_swallowed_by_a_finaliser_publishes_nothing(tmp_path, monkeypatch):
    """A Ctrl-C that lands in a finaliser is printed as "Exception ignored" and swallowed by
    Python; the output directory must still not be published (CI saw exactly this)."""
    class Finaliser:
        def __del__(self):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # what a Ctrl-C here does

    carried_on = False
    seen: list[object] = []
    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN under a shell's background job
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with pytest.raises(KeyboardInterrupt), catching_interrupts():
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "report.json").write_text("{}")
            Finaliser()  # collected at once; its KeyboardInterrupt is ignored
            carried_on = True
    assert carried_on
    assert seen == []  # no "Exception ignored ... Traceback" for the user: the flag carries the interrupt
    assert sys.unraisablehook == seen.append  # hook restored
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    with atomic_directory(tmp_path / "later") as staging:  # and the next run starts clean
        (staging / "report.json").write_text("{}")
    assert (tmp_path / "later" / "report.json").exists()


def test_without_interrupt_catching_nothing_changes(tmp_path):
    with catching_interrupts(), atomic_directory(tmp_path / "out") as staging:
        (staging / "report.json").write_text("{}")
    assert (tmp_path / "out" / "report.json").exists()


def test_an_interrupt_during_export_waits_for_it_and_then_publishes_nothing(tmp_path, ctrl_c_raises):
    """A Ctrl-C while torch.export / ONNX run is held until they finish (raised inside their C++
    callbacks it could crash the process), then stops the run before anything is published."""
    from prunec.interrupts import deferring_interrupts

    before = signal.getsignal(signal.SIGINT)
    finished = False
    with pytest.raises(KeyboardInterrupt), catching_interrupts():
        with atomic_directory(tmp_path / "out") as staging:
            with deferring_interrupts():
                signal.raise_signal(signal.SIGINT)  # a Ctrl-C in the middle of the export
                (staging / "model.onnx").write_text("whole")
                finished = True
            (staging / "report.json").write_text("{}")  # never reached
    assert finished and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before
    with deferring_interrupts():  # no interrupt: nothing raised, and none left over from the last one
        pass


def test_a_sigterm_held_through_an_export_ends_with_its_own_status(tmp_path, ctrl_c_raises):
    """A SIGTERM unwinds as Ctrl-C does but keeps its signal: the exit status is 143, as a shell reports a
    process SIGTERM ended, not Ctrl-C's 130."""
    from prunec.interrupts import deferring_interrupts, exit_status, raise_if_interrupted

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(KeyboardInterrupt) as held, catching_interrupts():
            with deferring_interrupts():
                signal.raise_signal(signal.SIGTERM)
        assert exit_status(held.value) == 128 + signal.SIGTERM
        with pytest.raises(KeyboardInterrupt) as direct, catching_interrupts():
            signal.raise_signal(signal.SIGTERM)
        assert exit_status(direct.value) == 128 + signal.SIGTERM
        with pytest.raises(KeyboardInterrupt) as ctrl_c, catching_interrupts():
            signal.raise_signal(signal.SIGINT)
        assert exit_status(ctrl_c.value) == 130
        raise_if_interrupted()  # the block ended: nothing left over
    finally:
        signal.signal(signal.SIGTERM, before)
    assert exit_status(KeyboardInterrupt()) == 130  # one raised by anything else reads as Ctrl-C


def test_an_empty_output_name_is_refused_by_name():
    """``-o ""`` resolved to the working directory and was refused as "already exists"."""
    with pytest.raises(UserError, match="empty name"):
        check_writable("", force=True)
    with pytest.raises(UserError, match="empty name"):
        check_writable_file(" ")


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, whatever the test runner got (SIG_IGN in a background job)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_deferring_leaves_no_stale_interrupt_and_keeps_an_ignored_sigint_ignored(ctrl_c_raises):
    """A Ctrl-C held through a block that then fails is not raised again by the next block; under
    SIG_IGN (a background job) the block neither installs a handler nor raises."""
    from prunec.interrupts import deferring_interrupts

    with pytest.raises(RuntimeError):
        with deferring_interrupts():
            signal.raise_signal(signal.SIGINT)
            raise RuntimeError("the export failed")
    with deferring_interrupts():  # nothing pending: no spurious KeyboardInterrupt
        pass
    reached = False
    with pytest.raises(KeyboardInterrupt), deferring_interrupts():  # a second Ctrl-C: the user insists
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        reached = True
    assert not reached
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferring_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored, as before
    finally:
        signal.signal(signal.SIGINT, before)


def test_compile_outputs_are_written_with_interrupts_held(monkeypatch, ctrl_c_raises):
    """write_outputs holds Ctrl-C around the torch.export / ONNX steps."""
    from types import SimpleNamespace

    import prunec.artifact
    from prunec import pipeline

    seen = []

    def record(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGINT))
        raise RuntimeError("stop here")

    monkeypatch.setattr(prunec.artifact, "save_compiled", record)
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.write_outputs(SimpleNamespace(compiled=None), Path("/nonexistent"))
    assert seen and getattr(seen[0], "__qualname__", "").startswith("deferring_interrupts")
