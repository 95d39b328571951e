"""Rendering a run summary and the connector list for people (rich tables) — the CLI's output layer."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..sdk.summary import RunSummary, StageCounts, top


def print_summary(summary: RunSummary, console: Console) -> None:
    """The run's outcome per row and per platform and stage."""
    title = f"{summary.campaign}: {summary.status}" + (" (dry run)" if summary.dry_run else "")
    rows = Table(title=title + f" — {summary.rows_read} rows in {summary.seconds:.1f}s", title_justify="left")
    rows.add_column("outcome")
    rows.add_column("rows", justify="right")
    rows.add_column("top reasons")
    reasons = {
        "rejected": summary.rejected_reasons,
        "ineligible": summary.ineligible_reasons,
        "suppressed": summary.suppressed_reasons,
    }
    for outcome, count in summary.outcomes.items():
        detail = "; ".join(f"{reason} ({n})" for reason, n in top(reasons.get(outcome, {}), 3))
        rows.add_row(outcome, str(count), detail)
    rows.add_row("[bold]total[/bold]", f"[bold]{sum(summary.outcomes.values())}[/bold]", "")
    console.print(rows)

    platforms = Table(title="Platforms (test group)", title_justify="left")
    for column in ("platform", "stage", "offered", "eligible", "suppressed", "unreachable", "desired", "added",
                   "removed", "invalid", "requests", "status"):
        platforms.add_column(column, justify="left" if column in ("platform", "stage", "status") else "right")
    for slug, p in summary.platforms.items():
        status = f"[red]{p.error}[/red]" if p.error else "ok"
        stages: list[tuple[str, StageCounts | None]] = [
            (stage, s) for stage, s in p.stages.items() if s.desired or s.added or s.removed
        ]
        first = True
        for stage, s in stages or [("-", None)]:
            head: list[Any] = [slug, p.offered, p.eligible, p.suppressed, p.unreachable] if first else [""] * 5
            cells = [s.desired, s.added, s.removed, s.invalid_reported] if s else ["", "", "", ""]
            tail = [p.requests, status] if first else ["", ""]
            platforms.add_row(str(head[0]), stage, *map(str, head[1:]), *map(str, cells), *map(str, tail))
            first = False
    console.print(platforms)
    for slug, p in summary.platforms.items():
        if p.messages:
            outcomes = ", ".join(f"{status} {n}" for status, n in sorted(p.messages.items()))
            console.print(f"{slug} deliveries: {outcomes}")
        if p.resent_in_doubt:
            console.print(f"{slug}: re-sent {p.resent_in_doubt} in-doubt steps (--resend-in-doubt)")
        if p.in_doubt:
            console.print(
                f"[yellow]warning[/yellow]: {slug}: {len(p.in_doubt)} steps in doubt (a killed run may have delivered "
                "them; not re-sent; `run --resend-in-doubt` re-sends them under the same Message-ID):"
            )
            for doubt in p.in_doubt:
                where = f"{escape(doubt.contact_id)} {escape(doubt.stage)} step {doubt.step}"
                console.print(f"  {where} {doubt.message_id}")
    if summary.holdout_overall:
        o = summary.holdout_overall
        console.print(
            f"Holdout: {o.test} test / {o.control} control over {summary.holdout_strata} strata "
            f"(balance p={o.p_value:.3f}); sample-ratio mismatches: {len(summary.holdout_mismatches)}"
        )
        for m in summary.holdout_mismatches:
            console.print(f"  [yellow]warning[/yellow]: stratum {m.stratum}: {m.test}/{m.control} (p={m.p_value:.2g})")
    people = summary.identity
    if people.records:
        console.print(
            f"People: {people.clusters} from {people.records} records; {people.multi_record_clusters} with several "
            f"records (largest {people.largest_cluster}); {people.regrouped} records took their person's group"
        )
    if summary.identity_enriched:
        enriched = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.identity_enriched.items()))
        console.print(f"Identity match table added: {enriched}")
    if summary.rejects_file:
        console.print(f"Rejects and identifier problems ({summary.field_issues} field issues): {summary.rejects_file}")
    if summary.plan_file:
        console.print(f"Planned changes per record (platform, stage, contact id, add/remove): {summary.plan_file}")
    for warning in summary.warnings:
        console.print(f"[yellow]warning[/yellow]: {escape(warning)}")  # segment names come from the CRM
    if summary.error:
        console.print(f"[red]error[/red]: {summary.error}")


def print_connectors(described: list[dict[str, Any]], console: Console) -> None:
    """The installed connectors and their declared capabilities."""
    table = Table(title="Installed connectors", title_justify="left")
    for column in ("platform", "name", "identifiers (key, hashed)", "match keys", "batch", "capabilities", "sandbox",
                   "from"):
        table.add_column(column)
    for d in described:
        identifiers = ", ".join(f"{i['kind']}→{i['key']}{'#' if i['hashed'] else ''}" for i in d["identifiers"])
        table.add_row(
            d["platform"], d["name"], identifiers, ", ".join(d["match_keys"]), f"{d['max_batch_size']:,}",
            ", ".join(d["capabilities"]), "yes" if d["sandbox"] else "no", _origin(d.get("module", "")),
        )
    console.print(table)
    console.print("# = SHA-256 hashed after normalization")


def _origin(module: str) -> str:
    """'built-in' for the package's own connectors, else the plugin's top-level module."""
    return "built-in" if module.startswith("crm_activation.connectors.") else module.split(".")[0]
