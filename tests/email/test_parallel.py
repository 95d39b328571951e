"""A whole run over several SMTP connections with render worker processes, against a real local relay."""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from crm_activation.campaign.email_settings import EmailConfig, StepConfig
from crm_activation.email.channel import EmailChannel
from crm_activation.email.composing import Composer
from crm_activation.email.ledger import SendLedger
from crm_activation.email.parallel import ParallelSend
from crm_activation.email.planning import EmailOutcome
from crm_activation.email.rendering import TemplateError
from crm_activation.email.samples import sample_config
from crm_activation.email.smtp import SmtpTransport
from crm_activation.sdk.errors import RunInterrupted
from crm_activation.state.database import Database, open_database

from .conftest import NOW, Recorder, SmtpServer, free_port, make_contact

STAGES = ("awareness", "consideration", "conversion")
BOUNDARY = re.compile(rb"={15}\d{19}==")


def run(db: Database, server: SmtpServer, contacts: list, *, connections: int = 3, processes: int = 2,
        config: EmailConfig | None = None, cancel: threading.Event | None = None,
        resend_in_doubt: bool = False) -> tuple[list[EmailOutcome], EmailChannel, ParallelSend]:
    """One run as `delivery.deliver` wires it, with the workers started from the first message."""
    creds = server.credentials()
    transports = [SmtpTransport(creds, sleep=lambda _: None, initial_wait=0.001, max_attempts=2)
                  for _ in range(connections)]
    channel = EmailChannel(config or sample_config(), creds, db, transports[0], campaign="wb",
                           resend_in_doubt=resend_in_doubt)
    outcomes: list[EmailOutcome] = []
    with Composer(channel.renderer, channel.letterhead(NOW), processes, start_after=0) as composer:
        parallel = ParallelSend(channel, transports, composer, now=NOW, report=outcomes.append, cancel=cancel,
                                batch_size=8, queue_size=8)
        try:
            parallel.run((c, False) for c in contacts)
        finally:
            for transport in transports:
                transport.close()
    return outcomes, channel, parallel


def people(n: int, prefix: str = "p") -> list:
    return [make_contact(f"{prefix}{i:03d}", STAGES[i % 3]) for i in range(n)]


def statuses(db: Database) -> dict[str, int]:
    return dict(db.execute("SELECT status, COUNT(*) FROM email_sends GROUP BY 1").fetchall())


def test_several_connections_deliver_each_message_once_and_write_the_same_bytes(db, smtp_server, tmp_path,
                                                                                start_smtp):
    contacts = people(60)
    outcomes, _, parallel = run(db, smtp_server, contacts)
    assert Counter(o.status for o in outcomes) == {"sent": 60}
    arrivals = smtp_server.recorder.arrivals
    assert sorted(a.rcpt_tos[0] for a in arrivals) == sorted(f"{c.contact_id}@example.com" for c in contacts)
    assert statuses(db) == {"sent": 60}
    assert parallel.connections_used >= 2 and len(smtp_server.recorder.sessions) >= 2

    # the same contacts through the one-at-a-time path: the same bytes, but for the random boundary
    sequential = open_database(tmp_path / "sequential.sqlite")
    other = start_smtp()
    creds = other.credentials()
    with SmtpTransport(creds) as smtp:
        channel = EmailChannel(sample_config(), creds, sequential, smtp, campaign="wb")
        assert {channel.deliver(c, now=NOW).status for c in contacts} == {"sent"}
    sequential.close()
    one_by_one = {a.rcpt_tos[0]: BOUNDARY.sub(b"B", a.data) for a in other.recorder.arrivals}
    assert {a.rcpt_tos[0]: BOUNDARY.sub(b"B", a.data) for a in arrivals} == one_by_one


class LimitedSMTP(SMTP):
    """Greets with 421 beyond `handler.limit` simultaneous sessions, as relays capping connections do."""

    def connection_made(self, transport: Any) -> None:
        handler = self.event_handler
        with handler.lock:
            self._refused = handler.active >= handler.limit
            if not self._refused:
                handler.active += 1
                handler.peak = max(handler.peak, handler.active)
        if self._refused:
            handler.refused += 1
            transport.write(b"421 4.7.0 too many connections from your host\r\n")
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if getattr(self, "_refused", False):
            return
        with self.event_handler.lock:
            self.event_handler.active -= 1
        super().connection_lost(error)


class LimitedRecorder(Recorder):
    limit: int = 1
    active: int = 0
    peak: int = 0
    refused: int = 0


class LimitedController(Controller):
    def factory(self) -> SMTP:
        return LimitedSMTP(self.handler, **self.SMTP_kwargs)


def test_a_relay_refusing_extra_connections_still_gets_every_message_once(db):
    recorder = LimitedRecorder()
    controller = LimitedController(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        server = SmtpServer(recorder, controller, controller.port)
        outcomes, _, _ = run(db, server, people(30), connections=4)
    finally:
        controller.stop()
    assert Counter(o.status for o in outcomes) == {"sent": 30}
    assert Counter(a.rcpt_tos[0] for a in recorder.arrivals) == {f"p{i:03d}@example.com": 1 for i in range(30)}
    assert recorder.refused >= 1 and recorder.peak == 1  # the spares were refused and gave their messages back
    assert statuses(db) == {"sent": 30}


def test_a_connection_lost_after_the_end_of_data_leaves_that_step_in_doubt_and_the_rest_sent(db, smtp_server):
    smtp_server.recorder.data_script = ["250", "250", "DROP"]  # the third message is accepted, its reply lost
    contacts = people(40)
    outcomes, channel, _ = run(db, smtp_server, contacts)
    counts = Counter(o.status for o in outcomes)
    assert counts == {"sent": 39, "in_doubt": 1}
    assert statuses(db) == {"sent": 39, "sending": 1}
    [doubt] = channel.ledger.in_doubt()
    assert Counter(a.rcpt_tos[0] for a in smtp_server.recorder.arrivals) == {
        f"{c.contact_id}@example.com": 1 for c in contacts}  # delivered once each, the in-doubt one included
    again, _, _ = run(db, smtp_server, contacts)  # next day's run: held, nothing re-sent
    assert [o.contact_id for o in again if o.status == "in_doubt"] == [doubt.contact_id]
    assert len(smtp_server.recorder.arrivals) == 40


def test_ctrl_c_stops_between_messages_with_nothing_in_doubt_and_the_next_run_sends_the_rest(db, smtp_server):
    cancel = threading.Event()
    recorder = smtp_server.recorder
    recorder.on_data = lambda _: cancel.set() if len(recorder.arrivals) == 10 else None
    contacts = people(60)
    with pytest.raises(RunInterrupted):
        run(db, smtp_server, contacts, cancel=cancel)
    recorder.on_data = None
    sent = len(recorder.arrivals)
    assert 10 <= sent <= 13  # the messages in flight on the 3 connections finished
    assert statuses(db) == {"sent": sent}  # each recorded; nothing claimed and left
    outcomes, _, _ = run(db, smtp_server, contacts)
    assert Counter(o.status for o in outcomes) == {"sent": 60 - sent, "not_due": sent}
    assert Counter(a.rcpt_tos[0] for a in recorder.arrivals) == {f"{c.contact_id}@example.com": 1 for c in contacts}


def test_a_template_error_in_a_worker_process_stops_the_run_and_keeps_the_step(db, smtp_server):
    broken = sample_config().model_copy(update={"sequences": {"awareness": (StepConfig(template="no-such"),)}})
    with pytest.raises(TemplateError) as error:
        run(db, smtp_server, people(20, "t"), config=broken)
    assert error.value.template == "no-such" and error.value.kind == "missing"
    assert smtp_server.recorder.arrivals == []
    assert statuses(db).get("deferred", 0) >= 1 and "sending" not in statuses(db)


def test_a_contact_listed_twice_is_decided_again_after_its_first_message(db, smtp_server):
    contacts = people(10)
    outcomes, _, _ = run(db, smtp_server, [*contacts, contacts[3], *people(5, "q")])
    assert Counter(o.status for o in outcomes) == {"sent": 15, "not_due": 1}
    assert len(smtp_server.recorder.by_recipient("p003@example.com")) == 1


def test_the_ledger_batch_reads_match_the_per_contact_reads(db, smtp_server):
    ledger = SendLedger(db, "wb")
    run(db, smtp_server, people(12), processes=1)
    ledger.claim("p001", "later", 1, "t", "", "<x@y>")  # in doubt
    records = ledger.records(["p000", "p001", "nobody"])
    for cid in ("p000", "p001", "nobody"):
        record = records[cid]
        assert [(r.stage, r.step, r.status) for r in record.pending()] == ledger.pending_of(cid)
        assert record.enrollment == ledger.enrollment(cid) and record.converted == ledger.has_converted(cid)
        assert record.last_sent_on() == ledger.last_sent_on(cid)
        assert record.done_steps("awareness") == ledger.done_steps(cid, "awareness")
