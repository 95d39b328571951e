"""Staging the run's desired membership in the state database, in chunks, as routed contacts stream by.

For each test contact, every channel's member (in the form the channel keeps, see `Channel.staged`) and its
match keys; for each control contact, its match keys on every channel; for both, a holdout ledger row (not in
dry runs). Once everything is staged, `drop_control_conflicts` takes back the test members who share an
identifier with a control contact: to the platform they are the same person, and pushing them would
contaminate the control group.

The ledger's `offered` is the treatment the campaign's channel plan gives the contact, not what one run
pushes: a run narrowed by `--platform` (`plan_rules` set) still records every channel the plan offers, and
keeps the recorded `reachable` entries of the channels it did not run (it cannot know them: their payloads
were not built), replacing only its own channels'. So measurement compares like with like whichever subset
ran last. A contact first seen by a subset run gets the run's channels in `reachable` until a full run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..campaign.schema import Campaign
from ..state.store import StateStore, encode_member
from .channels import Channel, HeldBack
from .eligibility import ChannelRules
from .platform_sync import audience_key
from .routing import RoutedContact

#: Rows held in memory before they are written in one transaction.
CHUNK = 20_000
CONFLICT = "shares an identifier with a control-group contact"


@dataclass
class StagedRows:
    """Rows waiting to be written to the state database in one transaction (built where contacts are routed)."""

    desired: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    test_keys: list[tuple[str, str, str, str]] = field(default_factory=list)
    control_keys: list[tuple[str, str]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)

    def full(self) -> bool:
        """Whether a chunk's worth is waiting."""
        return max(len(self.desired), len(self.test_keys), len(self.ledger)) >= CHUNK

    def clear(self) -> None:
        """Forget what was written."""
        for rows in (self.desired, self.test_keys, self.control_keys, self.ledger):
            rows.clear()


class Stager:
    """Stages routed contacts for one run; call `flush` after the last one."""

    def __init__(
        self,
        state: StateStore | None,
        campaign: Campaign,
        channels: Sequence[Channel],
        run_id: str,
        *,
        dry_run: bool,
        plan_rules: ChannelRules | None = None,
    ) -> None:
        """`plan_rules`: the channel rules over the campaign's whole plan, in a run of some of its channels only.

        `state` None: the stager only builds rows, which `take` hands to one that writes them.
        """
        self.state = state
        self.plan_rules = plan_rules
        self.campaign = campaign
        self.run_id = run_id
        self.dry_run = dry_run
        self.channel_names = {channel.name for channel in channels}
        self.match_fields = {channel.name: channel.payload.match_fields for channel in channels}
        #: the staged form of channels that keep the whole contact (`Channel.staged`); the others stage the
        #: encoded member alone. Only these functions are kept, not the channels (which hold HTTP sessions and
        #: locks), so a row-building stager can be sent to another process (`spark/`).
        self.staged_forms = {
            channel.name: channel.staged for channel in channels if getattr(channel, "keeps_contact", True)
        }
        self.rows = StagedRows()

    def add(self, routed: RoutedContact) -> None:
        """Stage one routed contact (written once a chunk is full; see `take` for a stager that never writes)."""
        rows = self.rows
        contact = routed.ref
        stage = contact.stage or self.campaign.funnel.first_stage
        key = audience_key(self.campaign.campaign, stage)
        for platform, member in routed.members.items():
            staged_form = self.staged_forms.get(platform)
            payload, fingerprint = staged_form(routed.contact, member) if staged_form else encode_member(member)
            rows.desired.append((platform, key, member.contact_id, fingerprint, payload))
            fields = self.match_fields[platform]
            rows.test_keys.extend(
                (platform, value, key, member.contact_id) for f, value in member.fields.items() if f in fields
            )
        for platform, member in routed.withheld.items():
            fields = self.match_fields[platform]
            rows.control_keys.extend((platform, v) for f, v in member.fields.items() if f in fields)
        rows.ledger.append(
            (
                contact.contact_id,
                routed.group.value,
                contact.country,
                contact.segment,
                "+".join(
                    routed.offered
                    if self.plan_rules is None
                    else self.plan_rules.offered_for(contact.country, contact.segment)[0]
                ),
                "+".join(routed.reachable),
                stage,
            )
        )
        if self.state is not None and rows.full():
            self.flush()

    def take(self) -> StagedRows:
        """The rows staged since the last `take`, to be written by another stager (`write`): a batch worker's."""
        rows, self.rows = self.rows, StagedRows()
        return rows

    def write(self, rows: StagedRows) -> None:
        """Add rows another stager built (`take`), in the order given; written once a chunk is full."""
        mine = self.rows
        mine.desired += rows.desired
        mine.test_keys += rows.test_keys
        mine.control_keys += rows.control_keys
        mine.ledger += rows.ledger
        if mine.full():
            self.flush()

    def flush(self) -> None:
        """Write what is waiting."""
        rows = self.rows
        assert self.state is not None, "a stager without a state database only builds rows (`take`)"
        self.state.stage_desired(rows.desired)
        self.state.stage_keys(rows.test_keys, rows.control_keys)
        if not self.dry_run:
            ledger = rows.ledger if self.plan_rules is None else self._keep_other_channels(rows.ledger)
            self.state.stage_holdout(self.campaign.campaign, self.run_id, ledger)
        rows.clear()

    def _keep_other_channels(self, ledger: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Ledger rows whose `reachable` keeps the recorded channels this (subset) run did not push."""
        assert self.state is not None
        recorded = self.state.holdout_reachable(self.campaign.campaign, [row[0] for row in ledger])
        merged = []
        for row in ledger:
            old = recorded.get(row[0])
            if old:
                offered = set(row[4].split("+"))
                kept = {p for p in old.split("+") if p and p not in self.channel_names and p in offered}
                row = (*row[:5], "+".join(sorted(kept.union(filter(None, row[5].split("+"))))), row[6])
            merged.append(row)
        return merged

    def drop_control_conflicts(self) -> HeldBack:
        """Take back the staged test members who share an identifier with a control contact."""
        assert self.state is not None
        return HeldBack(self.state.drop_control_conflicts(), CONFLICT)
