"""A whole run of the channel: several SMTP connections, while the next messages are decided and rendered.

Three stages overlap:

1. The calling thread takes contacts in batches: `EmailChannel.decide` (the batch's ledger rows in a few
   queries, the decisions, their writes in one transaction) and `jobs` (coupons and unsubscribe tokens in one
   transaction, contexts), then hands the jobs to the `Composer` (render + MIME on every core).
2. Composed batches, in order, feed a bounded queue: at most `queue_size` messages wait for the relay.
3. One thread per SMTP connection takes a message and runs `EmailChannel.send`: claim (committed alone), send,
   outcome committed alone by that thread right after the 250. Claims and outcomes are never batched, so the
   window in which a kill leaves a send in doubt is the single-connection one, and a kill leaves at most one
   step in doubt per connection (each one listed, as with one connection).

Stopping: once `cancel` is set (Ctrl-C) or a connection hits an error that concerns every message (template
error, login refused, bounce address refused, the database), no further message is claimed; the messages being
sent finish and are recorded; those queued but not claimed are dropped (only their enrollment, coupon and
unsubscribe token were written, which the next run reuses). The error, else `RunInterrupted`, is raised.

Connections: the first opens and retries as a single connection always did (an unreachable relay stops the
channel), and the others wait until it has sent its first message. They are spare (`SmtpTransport.spare`): one
the relay refuses (relays and ESPs cap connections per client) gives its message back and its thread ends,
and the run goes on with the connections it has.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from ..sdk.contact import Contact
from ..sdk.errors import RunInterrupted
from .channel import EmailChannel, Transport
from .composing import Composed, Composer, Job
from .planning import EmailOutcome, Intent
from .smtp import ConnectionUnavailable, SmtpTransport

T = TypeVar("T")
#: Contacts decided per batch: a few queries and one transaction each, short enough not to hold the database
#: connection (which the connections' claims and outcomes share) for long.
BATCH = 128


class WorkQueue(Generic[T]):
    """A bounded FIFO between the batching thread and the connection threads, that can be closed or stopped."""

    def __init__(self, capacity: int) -> None:
        """`capacity`: items `put` waits for room beyond."""
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.stopped = False
        self._unfinished = 0

    def put(self, item: T) -> bool:
        """Append, waiting for room; False when the queue was stopped."""
        with self._cond:
            while len(self._items) >= self.capacity and not self.stopped:
                self._cond.wait()
            if self.stopped:
                return False
            self._items.append(item)
            self._unfinished += 1
            self._cond.notify_all()
            return True

    def put_back(self, item: T) -> None:
        """Return an item taken but not handled, to the front (a spare connection that could not open)."""
        with self._cond:
            self._items.appendleft(item)
            self._cond.notify_all()

    def get(self) -> T | None:
        """The next item, waiting for one; None once stopped, or closed and empty."""
        with self._cond:
            while not self._items and not self._closed and not self.stopped:
                self._cond.wait()
            if self.stopped or not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def done(self) -> None:
        """An item taken with `get` was handled."""
        with self._cond:
            self._unfinished -= 1
            self._cond.notify_all()

    def join(self) -> None:
        """Wait until every item put was handled (or the queue stopped)."""
        with self._cond:
            while self._unfinished > 0 and not self.stopped:
                self._cond.wait()

    @property
    def drained(self) -> bool:
        """Closed, and every item taken."""
        with self._cond:
            return self._closed and not self._items

    def close(self) -> None:
        """No more items: `get` returns None once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop now: `get` returns None, `put` refuses, items left are dropped."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class _Message:
    intent: Intent
    address: str
    composed: Composed


class ParallelSend:
    """Runs a channel over many contacts with several connections and the render `Composer`."""

    def __init__(
        self,
        channel: EmailChannel,
        transports: Sequence[Transport],
        composer: Composer,
        *,
        now: datetime,
        report: Callable[[EmailOutcome], None],
        cancel: threading.Event | None = None,
        batch_size: int = BATCH,
        queue_size: int = 2 * BATCH,
    ) -> None:
        """Wire a run.

        Args:
            channel: decides, prepares and sends (its own `transport` is not used).
            transports: one per connection; all but the first should be spare `SmtpTransport`s.
            composer: renders and writes the messages (with the channel's letterhead for `now`).
            now: the run's clock.
            report: told every contact's outcome, from any thread (one at a time).
            cancel: set by Ctrl-C: no further message starts.
            batch_size: contacts decided at once.
            queue_size: composed messages waiting for a connection at most.
        """
        self.channel = channel
        self.transports = list(transports)
        self.composer = composer
        self.now = now
        self._report = report
        self.cancel = cancel or threading.Event()
        self.batch_size = batch_size
        self.queue: WorkQueue[_Message] = WorkQueue(queue_size)
        self.connections_used = 0
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._live = len(self.transports)
        self._first_sent = threading.Event()  # the first connection went first: the spares open after it
        self._composing: deque[tuple[list[Intent], list[Job], Future[list[Composed]]]] = deque()

    def run(self, contacts: Iterable[tuple[Contact, bool]]) -> set[str]:
        """Deliver to every (contact, converted); return the contact ids seen (for `EmailChannel.finish`)."""
        for transport in self.transports[1:]:
            if isinstance(transport, SmtpTransport):
                transport.spare = True
        threads = [threading.Thread(target=self._connection, args=(t, i == 0), name=f"email-smtp-{i}", daemon=True)
                   for i, t in enumerate(self.transports)]
        for thread in threads:
            thread.start()
        seen: set[str] = set()
        try:
            batch: list[tuple[Contact, bool]] = []
            for contact, converted in contacts:
                self._check()
                if contact.contact_id in seen:  # decided again only once its first message is settled
                    self._dispatch(batch)
                    batch = []
                    self._flush()
                    self.queue.join()
                    self._check()
                seen.add(contact.contact_id)
                batch.append((contact, converted))
                if len(batch) >= self.batch_size:
                    self._dispatch(batch)
                    batch = []
            self._dispatch(batch)
            self._flush()
            self.queue.close()
        except BaseException:
            self.queue.stop()
            raise
        finally:
            for thread in threads:
                thread.join()
            for *_, future in self._composing:
                future.cancel()
        self._check()
        return seen

    # -- the batching thread ----------------------------------------------------------------------------
    def _check(self) -> None:
        """Raise what stopped the run: a connection's error, else Ctrl-C."""
        with self._lock:
            error = self._error
        if error is not None:
            raise error
        if self.cancel.is_set():
            self.queue.stop()
            raise RunInterrupted("email: interrupted")

    def _dispatch(self, batch: list[tuple[Contact, bool]]) -> None:
        if not batch:
            return
        decisions = self.channel.decide(batch, self.now)
        for decision in decisions:
            if decision.outcome is not None:
                self.report(decision.outcome)
        jobs = self.channel.jobs(decisions, self.now)
        if jobs:
            intents = [d.intent for d in decisions if d.intent is not None]
            self._composing.append((intents, jobs, self.composer.submit(jobs)))
        while len(self._composing) > max(1, self.composer.processes):  # keep the workers busy, no further ahead
            self._enqueue()

    def _flush(self) -> None:
        while self._composing:
            self._enqueue()

    def _enqueue(self) -> None:
        intents, jobs, future = self._composing.popleft()
        for intent, job, composed in zip(intents, jobs, self.composer.results(jobs, future), strict=True):
            if not self.queue.put(_Message(intent, job.to_address, composed)):
                self._check()  # raises what stopped the queue
                raise RunInterrupted("email: stopped")

    # -- one thread per connection ----------------------------------------------------------------------
    def _connection(self, transport: Transport, first: bool) -> None:
        spare = isinstance(transport, SmtpTransport) and transport.spare
        used = False
        try:
            if not first:
                self._first_sent.wait()
            while (message := self.queue.get()) is not None:
                if self.cancel.is_set():
                    self.queue.stop()
                    break
                try:
                    if spare:
                        assert isinstance(transport, SmtpTransport)
                        transport.connect()
                    if not used:
                        used = True
                        with self._lock:
                            self.connections_used += 1
                    outcome = self.channel.send(message.intent, message.address, message.composed, transport,
                                                self.now)
                except ConnectionUnavailable:  # nothing of it was sent; if claimed, the claim is now `deferred`
                    self.queue.put_back(message)
                    return
                finally:
                    if first:
                        self._first_sent.set()
                self.queue.done()
                self.report(outcome)
        except BaseException as error:
            with self._lock:
                self._error = self._error or error
            self.queue.stop()
        finally:
            if first:
                self._first_sent.set()
            if isinstance(transport, SmtpTransport):
                transport.close()
            with self._lock:
                self._live -= 1
                last = self._live == 0
            if last and not (self.queue.stopped or self.queue.drained):  # all gave up: nothing can send the rest
                with self._lock:
                    self._error = self._error or ConnectionUnavailable("no SMTP connection could be opened")
                self.queue.stop()

    def report(self, outcome: EmailOutcome) -> None:
        """Pass an outcome on, one thread at a time."""
        with self._lock:
            self._report(outcome)
