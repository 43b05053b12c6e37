"""Slow jobs (loading a model, opening streams, tuning) run off the GUI thread, so the panel never freezes.

A Job wraps a callable in a QThread; its result or its error comes back as a Qt signal on the GUI thread.
A ComoliveError becomes its own readable message; any other exception is a bug: its traceback goes to
stderr and the message says so, but the panel stays up.
"""
from __future__ import annotations

import sys
import traceback

from PyQt6.QtCore import QThread, pyqtSignal

from models.errors import ComoliveError


def describe(exc: BaseException) -> str:
    if isinstance(exc, ComoliveError):
        return str(exc)
    traceback.print_exception(exc, file=sys.stderr)
    return f"internal error ({type(exc).__name__}: {exc})"


class Job(QThread):
    """Runs fn(*args, progress=...) if wants_progress, else fn(*args); emits done(result) or failed(message).

    progress(*values) calls from the worker arrive as one progress(tuple) signal on the GUI thread."""

    done = pyqtSignal(object)
    failed = pyqtSignal(str)
    progress = pyqtSignal(object)

    def __init__(self, fn, *args, wants_progress: bool = False, parent=None):
        super().__init__(parent)
        self.fn, self.args, self.wants_progress = fn, args, wants_progress

    def run(self) -> None:
        try:
            if self.wants_progress:
                result = self.fn(*self.args, progress=lambda *a: self.progress.emit(a))
            else:
                result = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - a worker must never take the panel down
            self.failed.emit(describe(e))
            return
        self.done.emit(result)


def run_job(jobs: set, job: Job, done, failed) -> Job:
    """Start a Job whose result goes to `done` (or its error message to `failed`); `jobs` keeps it alive
    until it has finished (a QThread must not be collected while it runs)."""
    jobs.add(job)
    job.done.connect(done)
    job.failed.connect(failed)
    job.finished.connect(lambda j=job: jobs.discard(j))
    job.start()
    return job
