"""Meta (Facebook) customer-file Custom Audiences through the Marketing API.

Contract (see docs/platform-apis.md section 1): create with `POST /act_{id}/customaudiences` (the campaign's
audience marker in `description`), find by that marker in the pages of `GET /act_{id}/customaudiences`, add with
`POST /{audience}/users`, remove with `DELETE /{audience}/users` and the same payload, replace with
`POST /{audience}/usersreplace` in a numbered session. Payloads are multi-key: a `schema` of field names and a
2-D `data` array, "" where a contact lacks a field. Meta throttles with error codes inside 400 bodies, so
`classify_response` reads them; the shared `PlatformHttp` does the retrying.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from crm_activation import (
    AccountConfig,
    Action,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Capability,
    ConfigError,
    Connector,
    Credentials,
    FatalError,
    HttpResponse,
    IdentifierKind,
    IdentifierRule,
    Member,
    PlatformHttp,
    QueryToken,
    RecordRejection,
    StagedBatch,
    response_of,
)
from crm_activation import normalization as norm

from .sandbox import FacebookSandbox
from .settings import (
    AUDIENCE_LIST_FIELDS,
    AUDIENCE_PAGE_SIZE,
    MAX_ROWS_PER_REQUEST,
    PERMISSION_CODES,
    RATE_LIMIT_CODES,
    TOKEN_INVALID_CODES,
    TRANSIENT_CODES,
    FacebookAccount,
    FacebookCredentials,
    appsecret_proof,
    audience_gone,
)

_IDENTIFYING_KEYS = ("EMAIL", "PHONE", "MADID", "EXTERN_ID")
_HASHING_DOC = "Meta 'Hashing and Normalizing Data' (custom audiences); platform-apis.md §1"


@dataclass
class MetaTokenAuth(QueryToken):
    """`access_token` as a query parameter plus `appsecret_proof` when the app secret is configured.

    Apps with "Require App Secret" switched on refuse calls without the proof; sending it always (when the
    secret is known) costs nothing.
    """

    app_secret: str | None = None

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the token and, with an app secret, its proof."""
        super().apply(headers, params)
        if self.app_secret:
            params["appsecret_proof"] = appsecret_proof(self.app_secret, self.token)


def meta_error(response: HttpResponse) -> dict[str, Any]:
    """The `error` object of a Graph API error body, or {} when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


class FacebookConnector(Connector):
    """Customer-file Custom Audiences (subtype CUSTOM) in one ad account."""

    platform = "facebook"
    display_name = "Meta (Facebook) Custom Audiences"
    account_model = FacebookAccount
    credentials_model = FacebookCredentials
    identifier_rules = (
        IdentifierRule(IdentifierKind.EMAIL, "EMAIL", norm.email_trimmed_lower, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.PHONE, "PHONE", norm.phone_digits_with_country_code, hashed=True, source=_HASHING_DOC
        ),
        IdentifierRule(IdentifierKind.GENDER, "GEN", norm.gender_meta, hashed=True, source=_HASHING_DOC),
        # Three fields from one date of birth, and the first initial from the first name: rules on a part of a
        # value (whole_value=False), left out when the CRM sent that value pre-hashed. The date is parsed once.
        IdentifierRule(
            IdentifierKind.DATE_OF_BIRTH, "DOBY", norm.dob_year_meta,
            hashed=True, source=_HASHING_DOC, whole_value=False,
        ),
        IdentifierRule(
            IdentifierKind.DATE_OF_BIRTH, "DOBM", norm.dob_month_meta,
            hashed=True, source=_HASHING_DOC, whole_value=False,
        ),
        IdentifierRule(
            IdentifierKind.DATE_OF_BIRTH, "DOBD", norm.dob_day_meta,
            hashed=True, source=_HASHING_DOC, whole_value=False,
        ),
        IdentifierRule(IdentifierKind.FIRST_NAME, "FN", norm.name_letters_lower, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.FIRST_NAME, "FI", norm.first_initial_meta,
            hashed=True, source=_HASHING_DOC, whole_value=False,
        ),
        IdentifierRule(IdentifierKind.LAST_NAME, "LN", norm.name_letters_lower, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.CITY, "CT", norm.city_meta, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.STATE, "ST", norm.state_meta, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.ZIP, "ZIP", norm.zip_meta, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.COUNTRY, "COUNTRY", norm.country_lower, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.MAID, "MADID", norm.maid_lower, hashed=False, source=_HASHING_DOC + " (MADID unhashed)"
        ),
        IdentifierRule(
            IdentifierKind.EXTERNAL_ID, "EXTERN_ID", norm.external_id_trimmed,
            hashed=False, source=_HASHING_DOC + " (unhashed)"
        ),
    )
    # Names, city, state, zip and country only help Meta match in combination; alone they identify nobody.
    match_keys = frozenset(
        {IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.MAID, IdentifierKind.EXTERNAL_ID}
    )
    max_batch_size = MAX_ROWS_PER_REQUEST
    capabilities = frozenset({Capability.REMOVE, Capability.REPLACE})
    default_base_url = "https://graph.facebook.com"
    # Meta's BUC quota is per ad account and hour (190,000 + 40 x audiences at standard tier); a few calls a
    # second of 10,000 rows each stays far below it.
    default_requests_per_second = 5.0
    # Each batch is one stateless request, so several may be in flight (`requests_in_flight`, default 4): within
    # the rate above, they overlap Meta's processing of one batch with the sending of the next (bench/bench_push.py:
    # one in flight keeps pace with Meta's own SDK, four are 1.5-2x faster). A run killed midway then has at most
    # the batches in flight to send again, which is harmless: adding a member twice changes nothing.
    default_requests_in_flight = 4
    sandbox = FacebookSandbox

    #: Payload columns in a fixed order, so one contact always produces the same row.
    schema_order: ClassVar[tuple[str, ...]] = tuple(rule.key for rule in identifier_rules)

    account: FacebookAccount
    credentials: FacebookCredentials

    def __init__(self, account: AccountConfig, credentials: Credentials, http: PlatformHttp) -> None:
        super().__init__(account, credentials, http)
        self._session_ids = random.SystemRandom()

    # -- HTTP hooks ---------------------------------------------------------------------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Map Meta error codes (sent in 400/403/500 bodies, rarely as 429) to the shared actions."""
        if response.status < 400:
            return None
        error = meta_error(response)
        code = error.get("code")
        if code in RATE_LIMIT_CODES:
            return Action.RATE_LIMITED
        if code in TRANSIENT_CODES or error.get("is_transient") is True:
            return Action.RETRY
        if code in TOKEN_INVALID_CODES or code in PERMISSION_CODES:
            # A system-user token cannot be refreshed by the connector: a person must issue a new one.
            return Action.CONFIG_ERROR
        return None

    def authenticator(self) -> MetaTokenAuth:
        """`access_token` query parameter, plus `appsecret_proof` when the app secret is set."""
        credentials = self.credentials
        secret = credentials.app_secret.get_secret_value() if credentials.app_secret else None
        return MetaTokenAuth(credentials.access_token.get_secret_value(), app_secret=secret)

    # -- operations ---------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join(("", self.account.api_version, *parts))

    @property
    def _act(self) -> str:
        return f"act_{self.account.ad_account_id}"

    def check(self) -> None:
        """Read the ad account; a refused token or an account it cannot see is a configuration error."""
        try:
            self.http.request(
                "GET",
                self._path(self._act),
                params={"fields": "id,name"},
                dry_run_result={"id": self._act, "name": "dry run"},
            )
        except FatalError as error:
            raise ConfigError(
                f"facebook: ad account {self._act} is not readable with this token "
                f"(Meta error {meta_error(response_of(error)).get('code', '?')})"
            ) from None

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """The known audience while Meta still has it; else the account's audience marked for this campaign; else new.

        The campaign's marker (`AudienceSpec.marker`) is written into the audience's `description` at creation and
        looked up before every create, so a lost state database, or a create whose answer timed out, finds its own
        audience. An audience of the same name without the marker (another campaign's, a person's) is never used.
        """
        if known is not None:
            try:
                response = self.http.request(
                    "GET",
                    self._path(known.remote_id),
                    params={"fields": "id,name,operation_status"},
                    dry_run_result={"id": known.remote_id, "name": spec.name},
                )
                return AudienceRef(key=spec.key, remote_id=str(response.json().get("id", known.remote_id)))
            except FatalError as error:
                if not audience_gone(meta_error(response_of(error))):
                    raise
        found = self._find_ref(spec)
        return found or self.create_audience_once(lambda: self._create(spec), lambda: self._find_ref(spec))

    def _create(self, spec: AudienceSpec) -> AudienceRef:
        response = self.http.request(
            "POST",
            self._path(self._act, "customaudiences"),
            json_body={
                "name": spec.name,
                "subtype": "CUSTOM",
                "customer_file_source": str(self.account.customer_file_source),
                "description": spec.described_with_marker(),
            },
            dry_run_result=self.dry_run_audience(spec),
            idempotent=False,
        )
        return AudienceRef(key=spec.key, remote_id=str(response.json()["id"]))

    def _find_ref(self, spec: AudienceSpec) -> AudienceRef | None:
        found = self._find(spec)
        return AudienceRef(key=spec.key, remote_id=found) if found is not None else None

    def _find(self, spec: AudienceSpec) -> str | None:
        """The oldest customer-file audience of the ad account whose description carries the spec's marker.

        Meta offers no documented filter on `description`, so every page of `customaudiences` is read (an account
        holds at most a few hundred customer-file audiences). Should a retried create have left twins, every
        lookup takes the same one: the lowest id, the first created.
        """
        params: dict[str, Any] = {"fields": AUDIENCE_LIST_FIELDS, "limit": AUDIENCE_PAGE_SIZE}
        mine: list[str] = []
        while True:
            body = self.http.request(
                "GET", self._path(self._act, "customaudiences"), params=params, dry_run_result={"data": []}
            ).json()
            mine += [
                str(item["id"])
                for item in body.get("data") or ()
                if isinstance(item, dict) and "id" in item and item.get("subtype", "CUSTOM") == "CUSTOM"
                and spec.is_marked(item.get("description"))
            ]
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            params = {**params, "after": after}
        return min(mine, key=_id_order) if mine else None

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What `POST /act_{id}/customaudiences` answers, with an id no real audience can have."""
        return {"id": f"dry-run-{spec.key}"}

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """`POST /{audience}/users` with one multi-key payload."""
        return self._upload("POST", audience, members, "users")

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """`DELETE /{audience}/users` with the payload the members were added with."""
        return self._upload("DELETE", audience, members, "users")

    def add_staged(self, audience: AudienceRef, batch: StagedBatch) -> BatchResult:
        """`add_members` built straight from the stored payloads (no `Member` per contact)."""
        return self._upload_staged("POST", audience, batch)

    def remove_staged(self, audience: AudienceRef, batch: StagedBatch) -> BatchResult:
        """`remove_members` built straight from the stored payloads."""
        return self._upload_staged("DELETE", audience, batch)

    def _upload_staged(self, method: str, audience: AudienceRef, batch: StagedBatch) -> BatchResult:
        if type(self).payload is not FacebookConnector.payload:  # a subclass builds its own rows from `Member`s
            members = batch.members()
            return self._upload(method, audience, members, "users")
        rows = batch.fields()
        return self._send(method, audience, batch.contact_ids, rows, self._payload(rows), "users")

    def replace_members(self, audience: AudienceRef, batches: Iterable[Sequence[Member]]) -> BatchResult:
        """Send every batch into one `usersreplace` session; Meta swaps the membership at the last batch.

        The last batch must carry `last_batch_flag`, so each batch is held back until the next one is known.
        A retried batch repeats its `batch_seq`, which Meta (and the sandbox) treat as the same batch.
        """
        session_id = self._session_ids.randrange(1, 2**53)  # JSON-safe integer, unique per replace
        # Meta asks for an estimate of the session's size; it is exact when the batches are already a list.
        total = sum(len(batch) for batch in batches) if isinstance(batches, Sequence) else None
        results: list[BatchResult] = []
        for seq, (batch, is_last) in enumerate(_with_last_flag(batches), start=1):
            session: dict[str, Any] = {"session_id": session_id, "batch_seq": seq, "last_batch_flag": is_last}
            if total is not None:
                session["estimated_num_total"] = total
            results.append(self._upload("POST", audience, batch, "usersreplace", session))
        if not results:
            raise FatalError("facebook: usersreplace needs at least one member; remove members to empty an audience")
        return BatchResult(
            received=sum(r.received for r in results),
            invalid=sum(r.invalid for r in results),
            rejections=tuple(rejection for r in results for rejection in r.rejections),
            job_id=str(session_id),
        )

    # -- payloads -----------------------------------------------------------------------------------------
    def payload(self, members: Sequence[Member]) -> dict[str, Any]:
        """The multi-key payload: declared keys present in the batch, in declaration order, "" for gaps."""
        return self._payload([member.fields for member in members])

    def _payload(self, rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """`payload` from each member's fields (one mapping per member, in batch order)."""
        keys = set().union(*rows)  # every key any member has; present if some member's value is not empty
        schema = [key for key in self.schema_order if key in keys and any(fields.get(key) for fields in rows)]
        if len(schema) == 1:  # single-key batches (e-mail only) are the common large case: one lookup per row
            (key,) = schema
            return {"schema": schema, "data": [[fields.get(key) or ""] for fields in rows]}
        data = [[fields.get(key, "") or "" for key in schema] for fields in rows]
        return {"schema": schema, "data": data}

    def _upload(
        self,
        method: str,
        audience: AudienceRef,
        members: Sequence[Member],
        edge: str,
        session: dict[str, Any] | None = None,
    ) -> BatchResult:
        contact_ids = [member.contact_id for member in members]
        rows = [member.fields for member in members]
        return self._send(method, audience, contact_ids, rows, self.payload(members), edge, session)

    def _send(
        self,
        method: str,
        audience: AudienceRef,
        contact_ids: Sequence[str],
        rows: Sequence[Mapping[str, str]],
        payload: dict[str, Any],
        edge: str,
        session: dict[str, Any] | None = None,
    ) -> BatchResult:
        """One `/users` or `/usersreplace` request carrying `payload` for these members (`rows`: their fields)."""
        if len(rows) > self.max_batch_size:
            raise ValueError(f"facebook: batch of {len(rows)} exceeds Meta's {self.max_batch_size}-row limit")
        body: dict[str, Any] = {"payload": payload}
        if session is not None:
            body["session"] = session
        response = self.http.request(
            method,
            self._path(audience.remote_id, edge),
            json_body=body,
            dry_run_result={
                "audience_id": audience.remote_id,
                "session_id": str(session["session_id"]) if session else "0",
                "num_received": len(rows),
                "num_invalid_entries": 0,
                "invalid_entry_samples": {},
            },
        )
        return self._batch_result(response.json(), contact_ids, rows)

    def _batch_result(
        self, body: dict[str, Any], contact_ids: Sequence[str], rows: Sequence[Mapping[str, str]]
    ) -> BatchResult:
        """Counts as Meta reports them; rejections only for rows a sample value points to without doubt.

        Meta returns no row index, only `invalid_entry_samples` (value -> reason) for some of the invalid rows,
        so `invalid` may exceed the rejections we can attribute. A sample names a row only when its value is a
        match key (email, phone, MADID, external id) of exactly one member: a hashed country is shared by many.
        Reasons carry Meta's text and the field name, never the value.
        """
        samples = body.get("invalid_entry_samples") or {}
        rejections: list[RecordRejection] = []
        if isinstance(samples, dict) and samples:
            owners: dict[str, list[tuple[str, str]]] = {}
            for member_id, fields in zip(contact_ids, rows, strict=True):
                for key in _IDENTIFYING_KEYS:
                    value = fields.get(key)
                    if value and value in samples:
                        owners.setdefault(value, []).append((member_id, key))
            for value, found in owners.items():
                if len({contact_id for contact_id, _ in found}) == 1:
                    contact_id, key = found[0]
                    rejections.append(RecordRejection(contact_id=contact_id, reason=f"{key}: {samples[value]}"))
        return BatchResult(
            received=int(body.get("num_received", len(rows))),
            invalid=int(body.get("num_invalid_entries", 0)),
            rejections=tuple(rejections),
            job_id=str(body["session_id"]) if body.get("session_id") else None,
        )




def _id_order(audience_id: str) -> tuple[int, str]:
    """Meta's ids grow with creation: numeric order is age order (a non-numeric id sorts last)."""
    return (int(audience_id), "") if audience_id.isdigit() else (2**63, audience_id)


def _with_last_flag(batches: Iterable[Sequence[Member]]) -> Iterator[tuple[Sequence[Member], bool]]:
    """Yield (batch, is_last), looking one batch ahead; empty batches are skipped."""
    pending: Sequence[Member] | None = None
    for batch in batches:
        if not batch:
            continue
        if pending is not None:
            yield pending, False
        pending = batch
    if pending is not None:
        yield pending, True
