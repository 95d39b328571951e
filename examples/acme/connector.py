"""Acme Ads customer lists: docs/writing-a-connector.md's example, held to `sandbox.py` by the contract kit."""

from collections.abc import Sequence

from pydantic import SecretStr

from crm_activation import (
    AccountConfig,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Connector,
    Credentials,
    IdentifierKind,
    IdentifierRule,
    Member,
    RecordRejection,
    RefreshTokenAuth,
)
from crm_activation import normalization as norm

from .sandbox import MAX_MEMBERS, TOKEN_PATH, AcmeSandbox

DOCS = "developers.acme.example/audiences/v1#member (fictional)"


class AcmeAccount(AccountConfig):
    """`platforms.acme.account` in a campaign file (never secrets)."""

    advertiser_id: str


class AcmeCredentials(Credentials):
    """From CRM_ACTIVATION_ACME_CLIENT_ID, ..._CLIENT_SECRET and ..._REFRESH_TOKEN."""

    client_id: SecretStr
    client_secret: SecretStr
    refresh_token: SecretStr


class AcmeConnector(Connector):
    """Customer-list audiences of one Acme advertiser, matched on hashed e-mail and phone."""

    platform = "acme"
    display_name = "Acme Ads (customer lists)"
    account_model = AcmeAccount
    credentials_model = AcmeCredentials
    identifier_rules = (
        IdentifierRule(IdentifierKind.EMAIL, "email_sha256", norm.email_trimmed_lower, hashed=True, source=DOCS),
        IdentifierRule(IdentifierKind.PHONE, "phone_sha256", norm.phone_e164, hashed=True, source=DOCS),
    )
    match_keys = frozenset({IdentifierKind.EMAIL, IdentifierKind.PHONE})
    max_batch_size = MAX_MEMBERS
    default_base_url = "https://api.acme.example"
    sandbox = AcmeSandbox

    account: AcmeAccount
    credentials: AcmeCredentials

    def authenticator(self) -> RefreshTokenAuth:
        """Bearer tokens for the refresh token, from the token endpoint on the API's host (so it moves with it)."""
        return RefreshTokenAuth.for_credentials(self.http, TOKEN_PATH, self.credentials, platform=self.platform)

    def check(self) -> None:
        """One cheap authenticated call: proves the credentials and the advertiser."""
        self.http.request("GET", f"/v1/advertisers/{self.account.advertiser_id}", dry_run_result={})

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """The audience whose external id is this campaign's marker (`known` and a timed-out create too), else new.

        Never one found by name: two campaigns may name their audiences alike. A deleted one is simply not found.
        """
        path = f"/v1/advertisers/{self.account.advertiser_id}/audiences"

        def find() -> AudienceRef | None:
            query = {"external_id": spec.marker}
            answer = self.http.request("GET", path, params=query, dry_run_result={"audiences": []})
            audiences = answer.json()["audiences"]
            return AudienceRef(key=spec.key, remote_id=str(audiences[0]["id"])) if audiences else None

        def create() -> AudienceRef:  # idempotent=False: a lost answer is looked up, never blindly sent again
            body = {"name": spec.name, "external_id": spec.marker}
            answer = self.http.request(
                "POST", path, json_body=body, dry_run_result=self.dry_run_audience(spec), idempotent=False
            )
            return AudienceRef(key=spec.key, remote_id=str(answer.json()["id"]))

        return find() or self.create_audience_once(create, find)

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Add one batch; the members Acme refuses are reported by contact id, the others are in."""
        return self._send("add", audience, members)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Remove one batch, sent with the same fields that added it."""
        return self._send("remove", audience, members)

    def _send(self, action: str, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        rows = [{key: value for key, value in member.fields.items() if value} for member in members]
        answer = self.http.request("POST", f"/v1/audiences/{audience.remote_id}/members:{action}",
                                   json_body={"members": rows}, dry_run_result={"rejected": []}).json()
        rejections = tuple(RecordRejection(contact_id=members[r["index"]].contact_id, reason=f"Acme: {r['reason']}")
                           for r in answer["rejected"])
        return BatchResult(received=len(members), invalid=len(rejections), rejections=rejections)
