"""E-mail through the CLI, killed with SIGKILL mid-send and resumed: at most once by default, nothing skipped.

The relay runs in this process (aiosmtpd), `crm-activation run` in a subprocess. The relay kills the subprocess
itself at a chosen message, so the kill point is exact, not a matter of timing:

- at MAIL FROM: the message was claimed and rendered, and never accepted;
- at the end of DATA, after keeping the message: the relay accepted it (it is in the inbox) and the client never
  saw the 250, so it could not record it: the duplicate window of issue 11.

Both leave the step in doubt. The resumed run must send every other due message, none twice, and list the
in-doubt ones; `--resend-in-doubt` must then send exactly those, under their first Message-ID.

With one SMTP connection each kill leaves exactly one step in doubt. With several, each connection may have
a claimed message in flight when the kill lands: up to one step in doubt per connection, all listed, the
delivered ones among them exactly those the relay accepted and the client never recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from .conftest import CLI
from .test_demo import free_port

CAMPAIGN = """\
campaign: kill-resume
audience:
  source: {type: csv, path: contacts.csv}
holdout: {fraction: 0.2}
channels:
  default: [email]
email:
  from_address: "Acme <hello@mail.example.com>"
  bounce_address: bounces@mail.example.com
  unsubscribe_url: https://mail.example.com/unsubscribe
  unsubscribe_mailto: unsubscribe@mail.example.com
  default_send_hour: null
  max_attempts: 1
  coupon: {prefix: KR100, amount: 100, currency: USD, valid_days: 30}
  sequences:
    awareness:
      - template: we-miss-you
        delay_days: 0
        variants: [{name: warm, weight: 1}, {name: brief, weight: 1}]
    conversion:
      - {template: coupon-offer, delay_days: 0}
      - {template: coupon-reminder, delay_days: 5}
platforms: {}
sync: {mode: incremental}
"""


@dataclass
class Mail:
    recipient: str
    message_id: str
    run: int


@dataclass
class KillingRelay:
    """A relay that keeps every message and, when armed, SIGKILLs the client at its n-th MAIL or DATA."""

    mails: list[Mail] = field(default_factory=list)
    run: int = 0
    kill_at: tuple[str, int] | None = None
    pid: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    killed: list[tuple[str, int]] = field(default_factory=list)
    killer_mails: list[Mail] = field(default_factory=list)  # accepted by the DATA that killed the client
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, kill_at: tuple[str, int] | None) -> None:
        self.run += 1
        self.kill_at, self.pid, self.counts = kill_at, None, Counter()
        self.started.clear()

    def _kill_if(self, command: str) -> bool:
        self.counts[command] += 1
        if self.kill_at != (command, self.counts[command]):
            return False
        assert self.started.wait(30) and self.pid is not None  # Popen has returned the client's pid
        os.kill(self.pid, signal.SIGKILL)
        self.killed.append((command, self.run))
        return True

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self._kill_if("mail"):
            return "421 4.3.0 closing"  # nothing accepted; the client is gone anyway
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(bytes(envelope.original_content), policy=policy.default)
        mails = [Mail(r, str(message["Message-ID"]), self.run) for r in envelope.rcpt_tos]
        with self.lock:  # accepted: from here on the message is delivered, whatever happens to the client
            self.mails.extend(mails)
        if self._kill_if("data"):  # before the 250 leaves: the client can never record this message
            self.killer_mails.extend(mails)
        return "250 2.0.0 accepted"


@pytest.fixture
def relay() -> Any:
    handler = KillingRelay()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def write_campaign(folder: Path, n: int = 40, connections: int = 1) -> Path:
    (folder / "campaign.yaml").write_text(CAMPAIGN.replace("  max_attempts: 1\n",
                                                           f"  max_attempts: 1\n  smtp_connections: {connections}\n"))
    rows = ["contact_id,email,first_name,country,funnel_stage,consent_email"]
    rows += [f"K{i:03d},k{i:03d}@example.com,Kim,US,{'conversion' if i % 2 else 'awareness'},true" for i in range(n)]
    (folder / "contacts.csv").write_text("\n".join(rows) + "\n")
    return folder / "campaign.yaml"


def cli_run(relay: KillingRelay, port: int, campaign: Path, state: str, *extra: str,
            kill_at: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
    """`crm-activation run` in a subprocess whose pid the relay knows before the first SMTP command."""
    env = dict(os.environ) | {
        "CRM_ACTIVATION_EMAIL_SMTP_HOST": "127.0.0.1", "CRM_ACTIVATION_EMAIL_SMTP_PORT": str(port),
        "CRM_ACTIVATION_EMAIL_SMTP_STARTTLS": "false", "CRM_ACTIVATION_EMAIL_COUPON_KEY": "kill-coupon-key-0123456789",
        "CRM_ACTIVATION_EMAIL_UNSUBSCRIBE_KEY": "kill-unsubscribe-key-0123456789",
    }
    relay.arm(kill_at)
    args = [str(CLI), "run", str(campaign), "--state", state, "--lock-wait", "30", *extra]
    proc = subprocess.Popen(args, cwd=campaign.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    relay.pid = proc.pid
    relay.started.set()
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def sent_in_last_run(relay: KillingRelay) -> list[Mail]:
    return [m for m in relay.mails if m.run == relay.run]


@pytest.mark.parametrize(("backend", "connections"), [("sqlite", 1), ("postgresql", 1), ("sqlite", 3),
                                                       ("postgresql", 3)])
def test_kills_mid_send_then_resume_send_nothing_twice_and_list_what_is_in_doubt(relay, tmp_path, backend,
                                                                                 connections, request):
    handler, port = relay
    campaign = write_campaign(tmp_path, connections=connections)
    state = str(tmp_path / "state.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")

    # Four runs killed: after the relay accepted the run's 4th message (never recorded), at its 3rd MAIL FROM
    # (claimed, never accepted), at the very first MAIL FROM of a run, and after accepting the run's 2nd message.
    for kill_at in (("data", 4), ("mail", 3), ("mail", 1), ("data", 2)):
        done = cli_run(handler, port, campaign, state, "--json", kill_at=kill_at)
        assert done.returncode == -signal.SIGKILL, done.stderr
    assert [kill for kill, _ in handler.killed] == ["data", "mail", "mail", "data"]
    accepted_unrecorded = {m.recipient for m in handler.killer_mails}
    assert len(accepted_unrecorded) == 2 and handler.killer_mails[0].run == 1

    done = cli_run(handler, port, campaign, state, "--json")
    assert done.returncode == 0, done.stderr
    email = json.loads(done.stdout)["platforms"]["email"]
    assert max(Counter((m.recipient, m.message_id) for m in handler.mails).values()) == 1  # no duplicate, any step
    per_mailbox = Counter(m.recipient for m in handler.mails)
    assert max(per_mailbox.values()) == 1
    in_doubt = {(d["contact_id"], d["stage"], d["step"]): d["message_id"] for d in email["in_doubt"]}
    assert len(in_doubt) == email["messages"]["in_doubt"]
    if connections == 1:
        assert len(in_doubt) == 4  # one per kill: one message at a time
    else:
        assert 4 <= len(in_doubt) <= 4 * connections  # at most one in flight per connection at each kill
    assert email["resent_in_doubt"] == 0
    doubt_mailboxes = {f"{cid.lower()}@example.com" for cid, _, _ in in_doubt}
    delivered_in_doubt = doubt_mailboxes & set(per_mailbox)
    if connections == 1:
        assert delivered_in_doubt == accepted_unrecorded  # the "data" kills: delivered, in doubt
    else:  # other connections' messages the relay accepted just before the kill may be unrecorded too
        assert accepted_unrecorded <= delivered_in_doubt
    assert {m.message_id for m in handler.mails if m.recipient in delivered_in_doubt} <= set(in_doubt.values())
    undelivered_in_doubt = doubt_mailboxes - set(per_mailbox)
    assert len(per_mailbox) == email["eligible"] - len(undelivered_in_doubt) > 20  # nothing skipped
    assert connections > 1 or len(undelivered_in_doubt) == 2

    printed = cli_run(handler, port, campaign, state)  # the printed summary lists them too; nothing is sent
    assert printed.returncode == 0 and not sent_in_last_run(handler), printed.stderr
    assert f"{len(in_doubt)} steps in doubt" in printed.stdout and all(cid in printed.stdout for cid, _, _ in in_doubt)

    done = cli_run(handler, port, campaign, state, "--json", "--resend-in-doubt")
    assert done.returncode == 0, done.stderr
    resent = sent_in_last_run(handler)
    assert sorted(m.recipient for m in resent) == sorted(doubt_mailboxes)  # exactly the in-doubt ones
    assert {m.message_id for m in resent} == set(in_doubt.values())  # each under its first Message-ID
    email = json.loads(done.stdout)["platforms"]["email"]
    assert email["in_doubt"] == [] and email["resent_in_doubt"] == len(in_doubt) == email["messages"]["sent"]

    done = cli_run(handler, port, campaign, state, "--json", "--resend-in-doubt")
    assert done.returncode == 0 and not sent_in_last_run(handler), done.stderr
