"""Long edits as background jobs: one worker thread, one job at a time, in the order submitted.

One worker is the point: the server holds one :class:`~regionedit.editor.Editor`, so one copy of
each model, and a device runs one generation well, not two. Requests that arrive while a job
runs wait in the queue, and their callers watch the job's progress by its id.
"""

from __future__ import annotations

import collections
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from ..errors import RegionEditError

__all__ = ["Job", "JobQueue", "Progress"]

log = logging.getLogger("regionedit")

JobStatus = Literal["queued", "running", "done", "failed"]
#: what a job calls to say how far it is: a fraction from 0 to 1 and a few words
Progress = Callable[[float, str], None]


@dataclass
class Job:
    """One piece of background work and what is known about it so far."""

    id: str
    kind: str
    run: Callable[[Progress], dict[str, Any]] = field(repr=False)
    status: JobStatus = "queued"
    progress: float = 0.0
    message: str = "waiting for the jobs before it"
    result: Optional[dict[str, Any]] = None
    #: {"type": exception class name, "message": one line}; never a traceback
    error: Optional[dict[str, str]] = None
    submitted_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None

    def public(self, *, ahead: int = 0) -> dict[str, Any]:
        """The job as the API shows it; ``ahead``: queued jobs that run before it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 3),
            "message": self.message,
            "ahead": ahead,
            "result": self.result,
            "error": self.error,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobQueue:
    """Runs submitted jobs one after another on a single worker thread.

    Finished jobs are remembered (the latest ``keep`` of them) so that their callers can read
    the result; a job's exception becomes its ``error``, and the worker goes on with the next.
    """

    def __init__(self, *, keep: int = 500) -> None:
        self._pending: queue.Queue[Optional[Job]] = queue.Queue()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._worker = threading.Thread(target=self._work, name="regionedit-jobs", daemon=True)
        self._worker.start()

    def submit(self, kind: str, run: Callable[[Progress], dict[str, Any]]) -> Job:
        """Queue ``run(progress)``; its return value becomes the job's ``result``."""
        job = Job(id=secrets.token_hex(8), kind=kind, run=run)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def ahead_of(self, job: Job) -> int:
        """How many jobs run before ``job`` (the running one included)."""
        if job.status != "queued":
            return 0
        with self._lock:
            earlier = [j for j in self._jobs.values() if j.submitted_at <= job.submitted_at]
        return sum(1 for j in earlier if j is not job and j.status in ("queued", "running"))

    def close(self, timeout: float = 30.0) -> None:
        """Let the running job finish, drop the queued ones, and stop the worker."""
        with self._lock:
            for job in self._jobs.values():
                if job.status == "queued":
                    job.status, job.message = "failed", "the server stopped before it ran"
                    job.error = {"type": "Cancelled", "message": job.message}
        self._pending.put(None)
        self._worker.join(timeout)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status in ("done", "failed")]
        for job_id in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            if job.status != "queued":  # cancelled by close()
                continue
            job.status, job.started_at = "running", time.time()
            job.message = "starting"

            def progress(fraction: float, message: str, job: Job = job) -> None:
                job.progress = min(1.0, max(job.progress, fraction))
                job.message = message

            try:
                job.result = job.run(progress)
            except Exception as exc:  # a failed job is reported to its caller, not raised here
                if not isinstance(exc, RegionEditError):
                    log.exception("job %s (%s) failed", job.id, job.kind)
                job.error = {"type": type(exc).__name__, "message": one_line(str(exc))}
                job.status, job.message = "failed", job.error["message"]
            else:
                job.status, job.progress, job.message = "done", 1.0, "done"
            finally:
                job.finished_at = time.time()


def one_line(text: str) -> str:
    """The first line of an error message (library messages are one line already)."""
    return (text.strip().splitlines() or ["(no message)"])[0]
