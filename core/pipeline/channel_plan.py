"""The campaign's channels, assembled: each enabled ad platform's connector, then e-mail when configured.

This is the one place that knows the kinds of channel there are; the engine is handed the list (and a test
or a library user can hand it their own). `--platform` narrows the list: a platform, or e-mail, that is not
named is left out. Ad platforms come first, e-mail last: the order of the summary (all push at once).
"""

from __future__ import annotations

from pathlib import Path

import pluggy

from ..campaign.credentials import load_credentials
from ..campaign.loader import LoadedCampaign
from ..campaign.schema import EMAIL_CHANNEL, Campaign
from ..email.delivery import EmailDelivery
from ..sdk.connector import Connector
from ..sdk.errors import ConfigError
from ..sdk.http import Outbox, PlatformHttp, RateLimiter, RetryPolicy
from ..sdk.plugins import collect_connectors
from ..sdk.redaction import Redactor, remember_secrets
from .channels import Channel
from .plan_file import PlanWriter
from .platform_channel import PlatformChannel
from .run_options import RunOptions, RunProgress


def campaign_channels(
    loaded: LoadedCampaign,
    campaign: Campaign,
    options: RunOptions,
    pm: pluggy.PluginManager,
    redactor: Redactor,
    progress: RunProgress | None = None,
) -> list[Channel]:
    """The run's channels in push order. `campaign` is `loaded.campaign` with the run's overrides applied.

    Every credential loaded is added to `redactor` (and to the process's log redaction) before any request.
    """
    plan = PlanWriter(options.plan) if options.dry_run and options.plan else None
    channels: list[Channel] = [
        PlatformChannel(
            slug, connector, campaign, hooks=pm.hook, redactor=redactor, dry_run=options.dry_run, progress=progress,
            plan=plan,
        )
        for slug, connector in build_connectors(campaign, options, pm, redactor).items()
    ]
    wanted = options.platforms
    if campaign.email is not None and (wanted is None or EMAIL_CHANNEL in wanted):
        channels.append(
            EmailDelivery(
                loaded, campaign, campaign.email, dry_run=options.dry_run, smtp=options.smtp, redactor=redactor,
                resend_in_doubt=options.resend_in_doubt, progress=progress, cancel=options.cancel,
            )
        )
    return channels


def enabled_platforms(campaign: Campaign, wanted: tuple[str, ...] | None) -> list[str]:
    """The ad platforms to push: enabled in the campaign and, when `--platform` was given, named there."""
    return [
        slug
        for slug, config in campaign.platforms.items()
        if config.enabled and (wanted is None or slug in wanted)
    ]


def planned_channels(campaign: Campaign) -> list[str]:
    """Every channel the campaign pushes when no `--platform` narrows the run: its treatment plan."""
    return enabled_platforms(campaign, None) + ([EMAIL_CHANNEL] if campaign.email is not None else [])


def check_platforms(campaign: Campaign, wanted: tuple[str, ...] | None) -> None:
    """Refuse a `--platform` that names no channel of the campaign (a typo must not make a run of nothing)."""
    known = planned_channels(campaign)
    unknown = [name for name in wanted or () if name not in known]
    if unknown:
        disabled = [name for name in unknown if name in campaign.platforms]
        why = f" ({', '.join(disabled)}: enabled: false in the campaign)" if disabled else ""
        raise ConfigError(
            f"--platform {', '.join(unknown)}: not a channel of this campaign{why}; known: {', '.join(known) or 'none'}"
        )


def build_connectors(
    campaign: Campaign, options: RunOptions, pm: pluggy.PluginManager, redactor: Redactor
) -> dict[str, Connector]:
    """One connector per enabled platform, with its account, credentials and HTTP client (an outbox in dry runs)."""
    installed = collect_connectors(pm)
    policy = options.policy or RetryPolicy(**campaign.http.model_dump())
    outbox = Outbox(options.outbox or Path("outbox"), redactor) if options.dry_run else None
    built: dict[str, Connector] = {}
    for slug in enabled_platforms(campaign, options.platforms):
        cls = installed.get(slug)
        if cls is None:
            names = ", ".join(installed) or "none"
            raise ConfigError(f"platforms.{slug}: no connector named {slug!r} is installed (installed: {names})")
        config = campaign.platforms[slug]
        try:
            account = cls.account_model.model_validate(config.account)
        except ValueError as error:
            raise ConfigError(f"platforms.{slug}.account: {error}") from None
        credentials = load_credentials(cls.credentials_model, slug, config)
        if slug in options.base_urls:
            account = cls.for_sandbox(account, options.base_urls[slug])
        secrets = credentials.secret_values()
        redactor.add(secrets)
        remember_secrets(secrets)
        base_url = account.base_url or cls.default_base_url
        rate = account.requests_per_second or cls.default_requests_per_second
        http = PlatformHttp(
            platform=slug,
            base_url=base_url,
            policy=policy,
            limiter=RateLimiter(rate, burst=max(1, int(rate))),
            classify=cls.classify_response,
            redactor=redactor,
            outbox=outbox,
            sleep=options.sleep,
            cancel=options.cancel,
            tokens=options.tokens,
        )
        built[slug] = cls(account, credentials, http)
    return built
