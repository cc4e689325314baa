"""The sweep's progress lines (sweep/progress.py)."""

from __future__ import annotations

import builtins

from ray import cloudpickle

from xsweep.sweep.progress import ProgressPrinter


def test_the_progress_printer_pickles_when_builtins_print_was_replaced(monkeypatch):
    """Tune pickles its callbacks into the experiment state. Ray Train replaces builtins.print in
    the processes it runs, and the builtin print a driver passes as `log` then no longer pickles by
    reference ("it's not the same object as builtins.print"): seen in this suite, where four Tuner
    runs of one test process failed so."""
    printer = ProgressPrinter(print)
    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: None)
    restored = cloudpickle.loads(cloudpickle.dumps(printer))
    assert callable(restored.log)
