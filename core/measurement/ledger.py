"""The exposure ledger: who was in the experiment, in which group and stratum, offered what, from when.

It is read from the state database the runs wrote (`holdout` joined with `runs` for the time each contact
entered), never recomputed from the audience: the experiment is what actually happened, including contacts
who later left the CRM export. When an `email_sends(campaign, contact_id, step, variant, ...)` table exists
(the email channel's send ledger), each contact's template variant is read too, so variants can be compared;
without it, variant cuts are simply absent.

The database is opened read-only: a report must never create or change state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..sdk.errors import InputError
from ..state.database import Database

NONE_LABEL = "(none)"
EMAIL_PLATFORM = "email"


@dataclass(frozen=True, slots=True)
class Exposure:
    """One contact of the experiment.

    Attributes:
        contact_id: the CRM id, as conversion events name it.
        group: "test" or "control".
        country: ISO code, or "(none)".
        segment: the segment, or "(none)".
        treatment: the `+`-joined platforms its country and segment were offered (recorded for both groups,
            so control is compared with the test contacts who got the same treatment), or "(none)".
        reachable: the platforms it was (test) or would have been (control) pushed to.
        entered_at: Unix time of the run that first recorded it (when the campaign could start to act on it).
        variant: its email template variant(s), `+`-joined, when the email send ledger has any.
    """

    contact_id: str
    group: str
    country: str
    segment: str
    treatment: str
    reachable: tuple[str, ...]
    entered_at: float
    variant: str | None = None


@dataclass
class Ledger:
    """The experiment of one campaign.

    Attributes:
        campaign: the campaign id.
        contacts: contact id → exposure.
        start: Unix time of the campaign's first run (day 0 starts here).
        variants_matched: whether control contacts carry a (would-have-been) variant too; when not, a variant
            is compared with the control contacts the email channel would have reached.
        variant_source: why variant cuts are (not) available, for the report.
    """

    campaign: str
    contacts: dict[str, Exposure]
    start: float
    variants_matched: bool = False
    variant_source: str = ""

    def __len__(self) -> int:
        return len(self.contacts)

    def __iter__(self) -> Iterator[Exposure]:
        return iter(self.contacts.values())


def load_ledger(db: Database, campaign: str) -> Ledger:
    """Read a campaign's exposure ledger from a state database.

    Args:
        db: a connection to the state database (read-only is enough: a report must not change state).
        campaign: the campaign id.

    Returns:
        The ledger.

    Raises:
        InputError: the database has no holdout ledger for this campaign.
    """
    if not (db.has_table("holdout") and db.has_table("runs")):
        raise InputError("the state database has no holdout ledger (no campaign was ever run against it)")
    rows = db.execute(
        "SELECT h.contact_id, h.grp, h.country, h.segment, h.offered, h.reachable, r.started_at "
        "FROM holdout h LEFT JOIN runs r ON r.run_id = h.first_run WHERE h.campaign=? ORDER BY h.contact_id",
        (campaign,),
    ).fetchall()
    if not rows:
        raise InputError(f"the state database has no holdout ledger for campaign {campaign!r} (run it first)")
    known = [row[6] for row in rows if row[6] is not None]
    start = min(known) if known else 0.0
    contacts = {
        contact_id: Exposure(
            contact_id=contact_id,
            group=group,
            country=country or NONE_LABEL,
            segment=segment or NONE_LABEL,
            treatment=offered or NONE_LABEL,
            reachable=tuple(reachable.split("+")) if reachable else (),
            entered_at=started_at if started_at is not None else start,
        )
        for contact_id, group, country, segment, offered, reachable, started_at in rows
    }
    ledger = Ledger(campaign, contacts, start)
    _attach_variants(db, ledger)
    return ledger


def _attach_variants(db: Database, ledger: Ledger) -> None:
    if not db.has_table("email_sends"):
        ledger.variant_source = "no email send ledger (email_sends): variant cuts skipped"
        return
    rows = db.execute(
        "SELECT contact_id, variant FROM email_sends WHERE campaign=? AND variant IS NOT NULL AND variant != ''",
        (ledger.campaign,),
    ).fetchall()
    variants: dict[str, set[str]] = {}
    for contact_id, variant in rows:
        if contact_id in ledger.contacts:
            variants.setdefault(contact_id, set()).add(str(variant))
    if not variants:
        ledger.variant_source = "no variants recorded in email_sends: variant cuts skipped"
        return
    for contact_id, values in variants.items():
        exposure = ledger.contacts[contact_id]
        ledger.contacts[contact_id] = _with_variant(exposure, "+".join(sorted(values)))
    ledger.variants_matched = any(ledger.contacts[c].group == "control" for c in variants)
    ledger.variant_source = (
        "variants recorded for both groups: each variant is compared with the control contacts of the same variant"
        if ledger.variants_matched
        else "variants recorded for test only: each variant is compared with the control contacts the email "
        "channel would have reached (not randomized at the variant level; no ratio check)"
    )


def _with_variant(exposure: Exposure, variant: str) -> Exposure:
    return Exposure(
        exposure.contact_id, exposure.group, exposure.country, exposure.segment, exposure.treatment,
        exposure.reachable, exposure.entered_at, variant,
    )
