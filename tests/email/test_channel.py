"""The channel end to end against a real SMTP server: ledger protocol, crashes, reruns, stops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from crm_activation.campaign.email_settings import StepConfig
from crm_activation.email.channel import EmailChannel
from crm_activation.email.ledger import InDoubtRow, SendLedger
from crm_activation.email.rendering import TemplateError
from crm_activation.email.samples import sample_config
from crm_activation.email.smtp import SmtpTransport
from crm_activation.email.unsubscribe import UnsubscribeLedger
from crm_activation.state.database import Database, DatabaseError, IntegrityError, open_database

from .conftest import NOW, kill_process, make_contact


def open_db(path: Path) -> Database:
    return open_database(path)


def channel(db, server, config=None, transport=None, resend_in_doubt=False) -> EmailChannel:
    creds = server.credentials()
    smtp = transport or SmtpTransport(creds, sleep=lambda _: None, initial_wait=0.001, max_attempts=2)
    return EmailChannel(config or sample_config(), creds, db, smtp, campaign="wb", campaign_name="Win back",
                        resend_in_doubt=resend_in_doubt)


class CrashAfterAccept:
    """Sends for real, then dies before the channel can mark the row: the ambiguous window of a kill."""

    def __init__(self, inner: SmtpTransport) -> None:
        self.inner = inner

    def send(self, message, envelope_from, recipient, on_accepted=None):
        self.inner.send(message, envelope_from, recipient)  # accepted; never recorded
        raise SystemExit("killed after the server accepted")


def test_claim_mark_protocol(db):
    ledger = SendLedger(db, "wb")
    claim = ledger.claim("c1", "awareness", 1, "we-miss-you", "warm", "<m1@x>", 9, "best_hour")
    assert claim is not None and not claim.resumed and ledger.status("c1", "awareness", 1) == ("sending", "<m1@x>", 1)
    # no reply recorded: in doubt. Not claimed again by default (at most once) ...
    assert ledger.claim("c1", "awareness", 1, "we-miss-you", "warm", "<m1@x>") is None
    assert ledger.pending_of("c1") == [("awareness", 1, "sending")]
    assert ledger.in_doubt() == [InDoubtRow("c1", "awareness", 1, "<m1@x>", 1, None)]
    # ... only when the operator asks for it, as recorded
    again = ledger.claim("c1", "awareness", 1, "other-template", "brief", "<other@x>", resend_in_doubt=True)
    assert again is not None and again.resumed and (again.template, again.variant, again.message_id) == (
        "we-miss-you", "warm", "<m1@x>")  # the recorded message wins over the new arguments
    ledger.mark_sent(again)
    assert ledger.claim("c1", "awareness", 1, "we-miss-you", "warm", "<m1@x>", resend_in_doubt=True) is None
    assert ledger.status("c1", "awareness", 1) == ("sent", "<m1@x>", 2) and ledger.in_doubt() == []
    with pytest.raises(IntegrityError):  # the UNIQUE key itself, whatever the code does
        db.execute("INSERT INTO email_sends (campaign, contact_id, stage, step, template, status, message_id, "
                   "attempts, attempted_at) VALUES ('wb', 'c1', 'awareness', 1, 't', 'sent', 'x', 1, 0)")


def test_ledger_states(db):
    """Every transition: deferred is resumed without asking, failed never, in doubt only when asked."""
    ledger = SendLedger(db, "wb")
    deferred = ledger.claim("c2", "conversion", 1, "coupon-offer", "", "<m2@x>", run_id="r1")
    assert deferred is not None
    ledger.mark_deferred(deferred, 451, "greylisted")
    assert ledger.in_doubt() == [] and ledger.pending() == [("c2", "conversion", 1)]
    resumed = ledger.claim("c2", "conversion", 1, "x", "", "<x@x>", run_id="r2")  # nothing was accepted: resend
    assert resumed is not None and resumed.resumed and resumed.message_id == "<m2@x>"
    assert ledger.in_doubt() == [InDoubtRow("c2", "conversion", 1, "<m2@x>", 2, "r2")]  # r2 killed here
    ledger.mark_failed(resumed, 550, "no such user")
    assert ledger.claim("c2", "conversion", 1, "x", "", "<x@x>", resend_in_doubt=True) is None  # never retried
    for contact in ("c3", "c4"):
        assert ledger.claim(contact, "awareness", 1, "we-miss-you", "", f"<{contact}@x>") is not None
    ledger.mark_deferred(ledger.claim("c4", "awareness", 1, "", "", "", resend_in_doubt=True), None, "dropped")
    assert ledger.cancel("c3", "awareness", 1, "unsubscribed") and ledger.cancel("c4", "awareness", 1, "converted")
    assert not ledger.cancel("c3", "awareness", 1, "again")  # terminal
    details = dict(db.execute("SELECT contact_id, detail FROM email_sends WHERE status='cancelled'").fetchall())
    assert details == {"c3": "in doubt (maybe delivered), cancelled: unsubscribed", "c4": "converted"}
    assert ledger.counts() == {"failed_permanent": 1, "cancelled": 2}
    assert ledger.in_doubt() == [] and ledger.pending() == []


def test_crash_between_accept_and_record_is_held_in_doubt_then_resent_on_request(tmp_path, smtp_server):
    path = tmp_path / "state.sqlite"
    contact = make_contact("c1", "awareness", history={"best_hour": 9})
    first = open_db(path)
    crashing = CrashAfterAccept(SmtpTransport(smtp_server.credentials(), sleep=lambda _: None))
    with pytest.raises(SystemExit):
        channel(first, smtp_server, transport=crashing).deliver(contact, now=NOW)
    first.close()  # the process is gone; only what was committed remains
    db = open_db(path)
    assert SendLedger(db, "wb").status("c1", "awareness", 1)[0] == "sending"
    for later in (timedelta(hours=1), timedelta(days=9)):  # held: not re-sent, and nothing newer either
        outcome = channel(db, smtp_server).deliver(contact, now=NOW + later)
        assert (outcome.status, outcome.step, outcome.in_doubt) == ("in_doubt", 1, True)
    assert len(smtp_server.recorder.arrivals) == 1
    outcome = channel(db, smtp_server, resend_in_doubt=True).deliver(contact, now=NOW + timedelta(hours=1))
    assert (outcome.status, outcome.step, outcome.resumed, outcome.in_doubt) == ("sent", 1, True, True)
    arrivals = smtp_server.recorder.by_recipient("c1@example.com")
    assert len(arrivals) == 2  # asked for at-least-once, the receiver got it twice ...
    first_copy, second_copy = (a.message for a in arrivals)
    assert first_copy["Message-ID"] == second_copy["Message-ID"]  # ... as one message it can deduplicate
    assert first_copy["Subject"] == second_copy["Subject"]  # same variant
    assert db.execute("SELECT COUNT(*), MIN(status), MAX(attempts) FROM email_sends").fetchone() == (1, "sent", 2)
    assert channel(db, smtp_server).deliver(contact, now=NOW + timedelta(days=1)).status == "not_due"
    assert len(smtp_server.recorder.arrivals) == 2


def test_an_accepted_message_the_ledger_cannot_record_stays_in_doubt(tmp_path, smtp_server):
    """The record right after the 250 fails (a real database error): never `deferred`, which would re-send it."""
    db = open_db(tmp_path / "state.sqlite")
    SendLedger(db, "wb")
    db.execute("CREATE TRIGGER no_sent BEFORE UPDATE OF status ON email_sends WHEN NEW.status = 'sent' "
               "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    contact = make_contact("c5", "awareness")
    with pytest.raises(DatabaseError):
        channel(db, smtp_server).deliver(contact, now=NOW)
    assert len(smtp_server.recorder.arrivals) == 1  # accepted by the relay
    assert SendLedger(db, "wb").status("c5", "awareness", 1)[:2] == ("sending", smtp_server.recorder.arrivals[0]
                                                                       .message["Message-ID"])
    db.execute("DROP TRIGGER no_sent")
    assert channel(db, smtp_server).deliver(contact, now=NOW).status == "in_doubt"
    assert len(smtp_server.recorder.arrivals) == 1


def test_a_relay_hanging_up_after_the_end_of_data_leaves_the_step_in_doubt(db, smtp_server):
    smtp_server.recorder.data_script = ["DROP"]
    contact = make_contact("c6", "consideration")
    first = channel(db, smtp_server).deliver(contact, now=NOW)
    assert (first.status, first.in_doubt, first.step) == ("in_doubt", True, 1)
    assert SendLedger(db, "wb").status("c6", "consideration", 1)[0] == "sending"
    assert channel(db, smtp_server).deliver(contact, now=NOW + timedelta(days=1)).status == "in_doubt"
    assert len(smtp_server.recorder.arrivals) == 1  # at most once


SCRIPT = """
import sys
from datetime import datetime
from crm_activation.state.database import open_database
from crm_activation.state.database import Database, IntegrityError, open_database
from crm_activation.email.channel import EmailChannel
from crm_activation.campaign.email_settings import EmailCredentials
from crm_activation.email.samples import sample_config
from crm_activation.email.smtp import SmtpTransport
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.sdk.contact import Attributes, Consent, Contact

path, port, coupon_key, unsub_key, now = sys.argv[1:6]
db = open_database(path)
creds = EmailCredentials(smtp_host="127.0.0.1", smtp_port=int(port), smtp_starttls=False, coupon_key=coupon_key,
                         unsubscribe_key=unsub_key)
with SmtpTransport(creds) as smtp:
    chan = EmailChannel(sample_config(), creds, db, smtp, campaign="wb")
    for i in range(30):
        contact = Contact(contact_id=f"k{i:02d}", identifiers={IdentifierKind.EMAIL: f"k{i:02d}@example.com",
                          IdentifierKind.COUNTRY: "US"},
                          attributes=Attributes(funnel_stage="conversion", consent=Consent(email_marketing=True)))
        chan.deliver(contact, now=datetime.fromisoformat(now))
"""


def test_a_run_killed_mid_send_is_rerun_without_skipping_or_duplicating(tmp_path, smtp_server):
    from .conftest import COUPON_KEY, UNSUB_KEY

    path = tmp_path / "state.sqlite"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    args = [sys.executable, str(script), str(path), str(smtp_server.port), COUPON_KEY, UNSUB_KEY, NOW.isoformat()]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    recorder = smtp_server.recorder
    kill = kill_process(proc.pid)
    recorder.on_data = lambda arrival: kill(arrival) if len(recorder.arrivals) == 12 else None
    proc.communicate(timeout=60)
    assert proc.returncode == -9  # SIGKILL while the 12th message was in the server's hands
    recorder.on_data = None
    assert len(recorder.arrivals) == 12
    db = open_db(path)
    statuses = dict(db.execute("SELECT status, COUNT(*) FROM email_sends GROUP BY 1").fetchall())
    assert statuses == {"sent": 11, "sending": 1}
    rerun = channel(db, smtp_server)
    contacts = [make_contact(f"k{i:02d}", "conversion") for i in range(30)]
    outcomes = [rerun.deliver(c, now=NOW) for c in contacts]
    assert [o.status for o in outcomes].count("sent") == 18  # the 18 never reached ...
    assert [(o.contact_id, o.status) for o in outcomes if o.in_doubt] == [("k11", "in_doubt")]  # ... not the 12th
    ids_per_contact: dict[str, set[str]] = {}
    for arrival in recorder.arrivals:
        ids_per_contact.setdefault(arrival.rcpt_tos[0], set()).add(arrival.message["Message-ID"])
    assert len(ids_per_contact) == 30 and all(len(ids) == 1 for ids in ids_per_contact.values())  # none skipped
    assert len(recorder.arrivals) == 30  # none twice
    assert [row.contact_id for row in rerun.ledger.in_doubt()] == ["k11"]
    resend = channel(db, smtp_server, resend_in_doubt=True)
    assert [o.contact_id for o in (resend.deliver(c, now=NOW) for c in contacts) if o.status == "sent"] == ["k11"]
    assert len(recorder.arrivals) == 31  # asked for: the in-doubt message twice, under one Message-ID
    assert len({a.message["Message-ID"] for a in recorder.by_recipient("k11@example.com")}) == 1
    assert db.execute("SELECT COUNT(*), MIN(status), MAX(status) FROM email_sends").fetchone() == (30, "sent", "sent")
    assert all(o.status == "not_due" for o in (rerun.deliver(c, now=NOW) for c in contacts))
    assert len(recorder.arrivals) == 31


def test_permanent_failure_is_never_resent_and_suppresses_the_address(db, smtp_server):
    smtp_server.recorder.script["gone@example.com"] = ["550 5.1.1 user unknown"]
    contact = make_contact("gone", "conversion", identifiers={})
    contact = contact.model_copy(update={"identifiers": {**contact.identifiers, "email": "gone@example.com"}})
    assert channel(db, smtp_server).deliver(contact, now=NOW).status == "failed_permanent"
    later = channel(db, smtp_server).deliver(contact, now=NOW + timedelta(days=6))
    assert later.status == "suppressed" and later.detail == "bounced (550)"
    assert smtp_server.recorder.rcpt_attempts["gone@example.com"] == 1


def test_deferred_step_is_sent_by_the_next_run(db, smtp_server):
    smtp_server.recorder.script["full@example.com"] = ["452 4.2.2 mailbox full"] * 2
    contact = make_contact("full", "consideration")
    contact = contact.model_copy(update={"identifiers": {**contact.identifiers, "email": "full@example.com"}})
    assert channel(db, smtp_server).deliver(contact, now=NOW).status == "deferred"
    outcome = channel(db, smtp_server).deliver(contact, now=NOW + timedelta(days=1))
    assert (outcome.status, outcome.resumed) == ("sent", True)
    assert db.execute("SELECT status, attempts FROM email_sends").fetchone() == ("sent", 2)


def test_unsubscribe_after_a_crash_cancels_the_pending_send(tmp_path, smtp_server):
    path = tmp_path / "state.sqlite"
    contact = make_contact("c9", "awareness")
    first = open_db(path)
    chan = channel(first, smtp_server, transport=CrashAfterAccept(SmtpTransport(smtp_server.credentials())))
    with pytest.raises(SystemExit):
        chan.deliver(contact, now=NOW)
    first.close()
    db = open_db(path)
    token = db.execute("SELECT token FROM email_unsubscribe_tokens WHERE contact_id='c9'").fetchone()[0]
    assert UnsubscribeLedger(db).record_unsubscribe(token)  # the one-click POST arrived meanwhile
    outcome = channel(db, smtp_server).deliver(contact, now=NOW)
    assert outcome.status == "suppressed" and "unsubscribed" in outcome.detail
    assert db.execute("SELECT status FROM email_sends").fetchone()[0] == "cancelled"
    assert len(smtp_server.recorder.arrivals) == 1


def test_a_sequence_over_days_with_a_stable_coupon(db, smtp_server):
    contact = make_contact("c2", "conversion", history={"open_hours": "8|8|20"})
    chan = channel(db, smtp_server)
    assert chan.deliver(contact, now=NOW).status == "sent"
    assert chan.deliver(contact, now=NOW + timedelta(days=1)).status == "not_due"
    early = NOW.replace(hour=6) + timedelta(days=5)
    waiting = chan.deliver(contact, now=early)
    assert (waiting.status, waiting.step) == ("waiting_hour", 2)
    assert waiting.detail == "08:00 UTC on 2026-11-07 (open_hours, a UTC hour from history)"
    assert chan.deliver(contact, now=early.replace(hour=8)).step == 2
    offer, reminder = (a.message for a in smtp_server.recorder.arrivals)
    code = SendLedger(db, "wb").db.execute("SELECT code FROM coupons WHERE contact_id='c2'").fetchone()[0]
    assert code in offer.get_body(("plain",)).get_content() and code in reminder["Subject"] + str(reminder)
    rows = db.execute("SELECT step, template, scheduled_hour, hour_source FROM email_sends ORDER BY step").fetchall()
    assert rows == [(1, "coupon-offer", 8, "open_hours"), (2, "coupon-reminder", 8, "open_hours")]
    assert chan.deliver(contact, now=NOW + timedelta(days=30)).status == "not_due"  # the sequence is finished


def test_conversion_stops_and_stays_stopped(db, smtp_server):
    contact = make_contact("c3", "conversion")
    chan = channel(db, smtp_server)
    assert chan.deliver(contact, now=NOW).status == "sent"
    smtp_server.recorder.script["c3@example.com"] = ["451 later"] * 2
    assert chan.deliver(contact, now=NOW + timedelta(days=5)).status == "deferred"  # step 2 pending
    assert chan.deliver(contact, now=NOW + timedelta(days=6), converted=True).status == "converted"
    assert chan.deliver(contact, now=NOW + timedelta(days=7)).status == "converted"
    assert db.execute("SELECT step, status FROM email_sends ORDER BY step").fetchall() == [(1, "sent"),
                                                                                           (2, "cancelled")]
    assert len(smtp_server.recorder.arrivals) == 1


def test_variants_are_recorded_for_measurement(db, smtp_server):
    chan = channel(db, smtp_server)
    for i in range(40):
        chan.deliver(make_contact(f"v{i}", "awareness"), now=NOW)
    rows = db.execute("SELECT contact_id, step, variant FROM email_sends WHERE campaign='wb'").fetchall()
    assert len(rows) == 40 and {v for _, _, v in rows} == {"warm", "brief"}
    by_contact = {cid: v for cid, _, v in rows}
    for arrival in smtp_server.recorder.arrivals:
        variant = by_contact[arrival.rcpt_tos[0].split("@")[0]]
        assert ("miss working with you" in arrival.message["Subject"]) == (variant == "warm")


def test_template_error_stops_the_channel_and_keeps_the_step(db, smtp_server):
    broken = sample_config().model_copy(update={"sequences": {"awareness": (StepConfig(template="no-such"),)}})
    with pytest.raises(TemplateError):
        channel(db, smtp_server, config=broken).deliver(make_contact("c4"), now=NOW)
    assert db.execute("SELECT status FROM email_sends").fetchone()[0] == "deferred"
    assert smtp_server.recorder.arrivals == []


def test_finish_cancels_rows_of_contacts_no_longer_in_the_audience(db, smtp_server):
    smtp_server.recorder.script["c5@example.com"] = ["451 later"] * 2
    chan = channel(db, smtp_server)
    assert chan.deliver(make_contact("c5"), now=NOW).status == "deferred"
    assert chan.finish(seen={"c6"}) == 1
    assert db.execute("SELECT status FROM email_sends").fetchone()[0] == "cancelled"


def test_suppression_reasons(db, smtp_server):
    from crm_activation.email.suppression import EmailSuppression
    from crm_activation.sdk.contact import Consent

    check = EmailSuppression(db, require_consent=True).reason
    assert check(make_contact("a", email_unsubscribed=True)) == "unsubscribed from email"
    assert check(make_contact("b", consent=Consent(email_marketing=False))) == "no email marketing consent"
    assert check(make_contact("c", consent=Consent())) == "no email marketing consent"
    assert check(make_contact("d", identifiers={"email": "f" * 64})) == "no sendable email address"
    assert check(make_contact("e", identifiers={"email": "not-an-address"})) == "no sendable email address"
    assert check(make_contact("f")) is None


@pytest.mark.parametrize(
    ("value", "converted"),
    [("yes", True), ("true", True), (1, True), ("no", False), ("false", False), (0, False), (None, False),
     ("", False), ("maybe", False)],
)
def test_only_a_yes_spelling_marks_a_contact_converted(value, converted):
    from crm_activation.email.delivery import is_converted
    from crm_activation.sdk.contact import Attributes, Contact

    contact = Contact(contact_id="c1", attributes=Attributes(extra={"converted": value}))
    assert is_converted(contact) is converted
