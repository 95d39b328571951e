"""Rendering and MIME building for the channel, on every core.

Rendering a template in Jinja2's sandbox and writing the MIME message are pure CPU work on plain values (the
context holds no object with methods), about 0.35 ms per message: most of what the channel spends per contact.
Threads would share one interpreter lock, so `Composer` spreads batches of `Job`s over worker processes, each
with its own `TemplateRenderer` over the same folder (same sandbox, same filters, same `prepare` hook). The
database, the ledger and SMTP stay in the run's process: a worker only turns a job into bytes.

Workers are plain subprocesses of this package (`compose_worker.py` says why not `multiprocessing`), started
only once a run has more than `start_after` messages to write: starting them costs about as much as rendering
a few thousand messages, which a small daily run never needs. Up to there, and with `processes=1`, jobs are
composed in this process by the same function, so the bytes do not depend on where they were made. When a
worker dies, `results` composes its batches here and the run goes on in one process (a warning says so).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..sdk.errors import CrmActivationError
from .compose_worker import WorkerProcess
from .message import message_bytes
from .rendering import TemplateRenderer
from .unsubscribe import UnsubscribeLinks

#: Messages a run composes in its own process before it starts worker processes.
START_AFTER = 256
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Letterhead:
    """What every message of a run shares."""

    from_address: str
    reply_to: str | None
    date: datetime


@dataclass(frozen=True, slots=True)
class Job:
    """One message to write: the template and its context, and the recipient's headers."""

    template: str
    variant: str | None
    context: dict[str, Any]
    to_address: str
    to_name: str
    message_id: str
    unsubscribe: UnsubscribeLinks
    feedback_id: str | None


@dataclass(frozen=True, slots=True)
class Composed:
    """The DATA bytes of a job, or why there are none.

    `error`: rendering failed (a `TemplateError`: it concerns every contact, the channel stops).
    `invalid`: the message cannot be written for this recipient (`build_message`'s ValueError).
    """

    data: bytes = b""
    error: CrmActivationError | None = None
    invalid: str | None = None


def compose(renderer: TemplateRenderer, letterhead: Letterhead, job: Job) -> Composed:
    """Render and write one message (in whichever process runs it)."""
    try:
        rendered = renderer.render_message(job.template, job.variant, job.context)
    except CrmActivationError as error:
        return Composed(error=error)
    try:
        data = message_bytes(
            rendered, from_address=letterhead.from_address, to_address=job.to_address, message_id=job.message_id,
            unsubscribe=job.unsubscribe, to_name=job.to_name, reply_to=letterhead.reply_to,
            feedback_id=job.feedback_id, date=letterhead.date,
        )
    except ValueError as error:
        return Composed(invalid=str(error))
    return Composed(data)


class Composer:
    """Composes batches of jobs, in worker processes once the run is big enough; use as a context manager."""

    def __init__(
        self, renderer: TemplateRenderer, letterhead: Letterhead, processes: int, start_after: int = START_AFTER
    ) -> None:
        """Nothing starts here.

        Args:
            renderer: this process's renderer; workers build their own over its folder and `prepare` hook
                (which must then be a function importable by module and name, to reach them).
            letterhead: what every message shares.
            processes: worker processes; 1 composes everything in this process.
            start_after: messages composed here before the workers start (0: from the first).
        """
        self.renderer = renderer
        self.letterhead = letterhead
        self.processes = processes
        self.start_after = start_after
        self.submitted = 0
        self._workers: list[WorkerProcess] = []

    @property
    def started(self) -> bool:
        """Whether worker processes are running."""
        return bool(self._workers)

    def submit(self, jobs: Sequence[Job]) -> Future[list[Composed]]:
        """A future of the batch's `Composed`, in the order of `jobs` (done already when composed here)."""
        self.submitted += len(jobs)
        if not self._workers and self.processes > 1 and self.submitted > self.start_after:
            init = (compose, self.renderer.folder, self.renderer.prepare, self.letterhead)
            self._workers = [WorkerProcess(init) for _ in range(self.processes)]
        if self._workers:
            return min(self._workers, key=lambda w: w.pending).submit(list(jobs))
        done: Future[list[Composed]] = Future()
        done.set_result([compose(self.renderer, self.letterhead, job) for job in jobs])
        return done

    def results(self, jobs: Sequence[Job], future: Future[list[Composed]]) -> list[Composed]:
        """The batch `submit` returned for `jobs`; composed here when its worker process broke."""
        try:
            return future.result()
        except BrokenProcessPool as error:
            if self._workers:
                log.warning("e-mail render processes stopped (%s); rendering in the run's process", error)
                self.close()
                self.processes = 1
            return [compose(self.renderer, self.letterhead, job) for job in jobs]

    def close(self) -> None:
        """Stop the workers (batches not answered yet are dropped)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()

    def __enter__(self) -> Composer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
