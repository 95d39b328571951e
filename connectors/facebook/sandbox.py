"""A local emulator of Meta's custom-audience endpoints that enforces the same contract as the connector.

Served endpoints (all under a supported `/v{N}.{M}/` prefix): `GET /act_{id}`, `GET` (`fields`, `limit`, cursor
paging) and `POST /act_{id}/customaudiences`, `GET` and `DELETE /{audience}`, `POST`/`DELETE /{audience}/users`,
`POST /{audience}/usersreplace`. Errors come in Graph API shape (`{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}`), throttling as HTTP 400 with code 80003 and no Retry-After (Meta sends none), and
transient failures as HTTP 500 code 2. Audiences of several ad accounts (and so of several campaigns) live side by
side; a list shows one account's, each with the `description` its creator gave it.

Membership is a set of row identities (a payload row's non-empty fields, `{field: value}`, as `member_key`
spells them). That is simpler than Meta, which matches rows to people, but it makes the properties tests need
exact: re-adding is idempotent, removing with the same payload removes, and the end state compares row for row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from crm_activation import (
    Credentials,
    FaultPlan,
    SandboxApp,
    SandboxAudience,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
    member_key,
)

from .settings import AUDIENCE_PAGE_SIZE, MAX_ROWS_PER_REQUEST, SCHEMA_KEYS, CustomerFileSource, FacebookCredentials

_VERSION = re.compile(r"^v\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MADID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SINGLE_KEY_ALIASES = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
#: The fields an audience can be read with, alone or in a list.
_AUDIENCE_FIELDS = frozenset({
    "id", "name", "description", "subtype", "customer_file_source", "operation_status",
    "approximate_count_lower_bound", "approximate_count_upper_bound",
})
_MISSING = (
    "Unsupported {verb} request. Object with ID '{id}' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation."
)


@dataclass
class _Audience(SandboxAudience):
    account: str
    description: str = ""
    customer_file_source: str = CustomerFileSource.USER_PROVIDED_ONLY.value


@dataclass
class _ReplaceSession:
    batches: dict[int, set[Hashable]] = field(default_factory=dict)
    finished_seq: int | None = None
    final_response: dict[str, Any] | None = None


class FacebookSandbox(SandboxApp[_Audience]):
    """Meta's Marketing API custom-audience surface, in memory.

    Args:
        credentials: the token (and optional app secret) the sandbox accepts; anything else is refused.
        faults: throttling, 5xx, timeouts and partial rejects to inject.
        ad_account_ids: the ad accounts that exist; None lets the token see any numeric account id.
    """

    platform = "facebook"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "access_token": "sandbox-facebook-token-3f9a1c",
    }
    first_id = 23850000000000001
    supported_versions = ("v24.0", "v25.0")
    max_samples = 10  # Meta returns a handful of `invalid_entry_samples`, never a full list
    default_page_size = 25  # the Graph API's page when `limit` is not given

    def __init__(
        self, credentials: Credentials, faults: FaultPlan | None = None, ad_account_ids: Iterable[str] | None = None
    ) -> None:
        if not isinstance(credentials, FacebookCredentials):
            raise TypeError("FacebookSandbox needs FacebookCredentials")
        super().__init__(credentials, faults)
        self.fb_credentials = credentials
        self.ad_accounts = _account_set(ad_account_ids)
        self._sessions: dict[tuple[str, str], _ReplaceSession] = {}
        self._traces = itertools.count(1)
        self.max_page_size = AUDIENCE_PAGE_SIZE  # the most audiences one list page holds; a test may lower it

    # -- faults in Meta's shape ---------------------------------------------------------------------------
    def error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "OAuthException",
        subcode: int | None = None,
        transient: bool = False,
    ) -> SandboxError:
        """A Graph API error, ready to raise."""
        body: dict[str, Any] = {"message": message, "type": kind, "code": code, "is_transient": transient}
        if subcode is not None:
            body["error_subcode"] = subcode
        with self.lock:
            body["fbtrace_id"] = f"Sbx{next(self._traces):019d}"
        return SandboxError(status, {"error": body})

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """Meta's custom-audience throttle: HTTP 400, code 80003, and no Retry-After header."""
        message = "(#80003) There have been too many calls to this ad-account. Wait a bit and try again."
        return self.error(400, 80003, message, subcode=2446079, transient=True).response

    def server_error_response(self) -> SandboxResponse:
        """Meta's transient failure: HTTP 500, code 2, `is_transient` true."""
        message = "An unexpected error has occurred. Please retry your request later."
        return self.error(500, 2, message, transient=True).response

    def bad(self, message: str, subcode: int | None = None) -> SandboxError:
        """Meta's usual refusal of a request: HTTP 400, code 100 ("Invalid parameter"), GraphMethodException."""
        return self.error(400, 100, message, kind="GraphMethodException", subcode=subcode)

    def missing(self, node: str, method: str) -> SandboxError:
        """What Meta answers for an object that does not exist, was deleted or is not visible: 100/33."""
        return self.bad(_MISSING.format(verb=method.lower(), id=node), subcode=33)

    def secrets(self) -> list[str]:
        """The token, the app secret and the proof derived from them are masked in the request log."""
        proof = self.fb_credentials.appsecret_proof()
        return [*super().secrets(), *([proof] if proof else [])]

    # -- test helpers --------------------------------------------------------------------------------------
    def reset(self, ad_account_ids: Iterable[str] | None = None) -> None:
        """Forget audiences, sessions, logged requests and faults, so tests can share one running server."""
        with self.lock:
            super().reset()
            self._sessions.clear()
            self.ad_accounts = _account_set(ad_account_ids)
            self.max_page_size = AUDIENCE_PAGE_SIZE

    # -- dispatch ------------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Check version and credentials, then route to the endpoint."""
        params = self._params(request)
        parts = request.path.strip("/").split("/")
        if not _VERSION.match(parts[0]) or parts[0] not in self.supported_versions:
            raise self.error(400, 2635, "(#2635) You are calling a deprecated or unknown version of the Ads API.")
        self._authenticate(params)
        node, edge, method = parts[1] if len(parts) > 1 else "", "/".join(parts[2:]), request.method
        if node.startswith("act_"):
            account = self._account(node, method)
            if edge == "" and method == "GET":
                return SandboxResponse(200, {"id": node, "name": f"Sandbox ad account {account}"})
            if edge == "customaudiences" and method == "POST":
                return self._create(account, params)
            if edge == "customaudiences" and method == "GET":
                return self._list(node, account, params)
        elif node in self.audiences:
            audience = self.audiences[node]
            if edge == "" and method == "GET":
                return self._read(node, audience, params)
            if edge == "" and method == "DELETE":
                self.delete_audience(node)
                return SandboxResponse(200, {"success": True})
            if edge in ("users", "usersreplace") and method in ("POST", "DELETE"):
                return self._users(node, audience, params, method, edge)
        raise self.missing(node, method)

    def _params(self, request: SandboxRequest) -> dict[str, Any]:
        """Query parameters merged with the body: JSON (as the connector sends) or form-encoded (Meta's example)."""
        params: dict[str, Any] = {k: v[0] for k, v in request.query.items()}
        content_type = request.header("content-type") or ""
        if request.body and "json" in content_type:
            body = request.json()
            if not isinstance(body, dict):
                raise self.bad("(#100) The request body must be a JSON object")
            params.update(body)
        elif request.body:
            params.update({k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()})
        return params

    def _authenticate(self, params: dict[str, Any]) -> None:
        token = params.get("access_token")
        expected = self.fb_credentials.access_token.get_secret_value()
        if not token:
            raise self.error(400, 104, "An access token is required to request this resource.")
        if not hmac.compare_digest(str(token), expected):
            raise self.error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        proof = self.fb_credentials.appsecret_proof()
        if proof is not None:
            given = params.get("appsecret_proof")
            if not given:
                raise self.bad("API calls from the server require an appsecret_proof argument")
            if not hmac.compare_digest(str(given), proof):
                raise self.bad("Invalid appsecret_proof provided in the API argument")

    def _account(self, node: str, method: str) -> str:
        account = node.removeprefix("act_")
        if not account.isdigit() or (self.ad_accounts is not None and account not in self.ad_accounts):
            raise self.missing(node, method)
        return account

    # -- endpoints -----------------------------------------------------------------------------------------
    def _create(self, account: str, params: dict[str, Any]) -> SandboxResponse:
        name = params.get("name")
        if not name:
            raise self.bad("(#100) The parameter name is required")
        if params.get("subtype") != "CUSTOM":
            raise self.bad("(#100) subtype must be CUSTOM for a customer file audience")
        source = params.get("customer_file_source")
        if source not in {s.value for s in CustomerFileSource}:
            raise self.bad("(#100) customer_file_source is required and must be a known value")
        audience = _Audience(account, str(params.get("description") or ""), source, name=str(name))
        return SandboxResponse(200, {"id": self.create_audience(audience)})

    def _list(self, node: str, account: str, params: dict[str, Any]) -> SandboxResponse:
        """One page of the account's audiences, oldest first, as the Graph API pages an edge.

        `limit` (default 25, capped at `max_page_size`), opaque `after`/`before` cursors, and a `paging.next` link
        only while more remain; other accounts' audiences are never listed.
        """
        try:
            limit = int(params.get("limit") or self.default_page_size)
        except (TypeError, ValueError):
            raise self.bad("(#100) limit must be an integer") from None
        if limit < 1:
            raise self.bad("(#100) limit must be a positive integer")
        mine = [(i, a) for i, a in self.audiences.items() if a.account == account]
        start = 0
        if params.get("after"):
            ids = [i for i, _ in mine]
            position = _uncursor(str(params["after"]))
            if position not in ids:
                raise self.bad("(#100) The after cursor is not valid")
            start = ids.index(position) + 1
        page = mine[start : start + min(limit, self.max_page_size)]
        wanted = self._wanted_fields(params)
        body: dict[str, Any] = {"data": [{f: self._fields(i, a)[f] for f in wanted} for i, a in page]}
        if page:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(page[0][0]), "after": _cursor(page[-1][0])}}
            if start + len(page) < len(mine):
                query = urlencode({"fields": ",".join(wanted), "limit": limit, "after": _cursor(page[-1][0])})
                paging["next"] = f"{self.base_url}/{self.supported_versions[-1]}/{node}/customaudiences?{query}"
            body["paging"] = paging
        return SandboxResponse(200, body)

    def _wanted_fields(self, params: dict[str, Any]) -> list[str]:
        wanted = [f for f in str(params.get("fields") or "id").split(",") if f]
        unknown = [f for f in wanted if f not in _AUDIENCE_FIELDS]
        if unknown:
            raise self.bad(f"(#100) Tried accessing nonexisting field ({unknown[0]})")
        return wanted

    def _fields(self, audience_id: str, audience: _Audience) -> dict[str, Any]:
        return {
            "id": audience_id,
            "name": audience.name,
            "description": audience.description,
            "subtype": "CUSTOM",
            "customer_file_source": audience.customer_file_source,
            "operation_status": {"code": 200, "description": "Normal"},
            "approximate_count_lower_bound": len(audience.members),
            "approximate_count_upper_bound": len(audience.members),
        }

    def _read(self, audience_id: str, audience: _Audience, params: dict[str, Any]) -> SandboxResponse:
        available = self._fields(audience_id, audience)
        return SandboxResponse(200, {f: available[f] for f in self._wanted_fields(params)})

    def _users(
        self, audience_id: str, audience: _Audience, params: dict[str, Any], method: str, edge: str
    ) -> SandboxResponse:
        schema, data = self._payload(params)
        valid, samples, invalid = self._rows(schema, data, reject_some=method == "POST")
        body = {
            "audience_id": audience_id,
            "session_id": "",
            "num_received": len(data),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }
        if edge == "usersreplace":
            return SandboxResponse(200, self._replace(audience_id, audience, params, valid, body))
        body["session_id"] = self.next_id()
        change = audience.add if method == "POST" else audience.remove
        for row in valid:
            change(row)
        return SandboxResponse(200, body)

    def _replace(
        self, audience_id: str, audience: _Audience, params: dict[str, Any], valid: set[Hashable], body: dict[str, Any]
    ) -> dict[str, Any]:
        session_param = self._json_param(params, "session")
        try:
            session_id = str(session_param["session_id"])
            seq = int(session_param["batch_seq"])
            last = session_param.get("last_batch_flag", False) is True
        except (KeyError, TypeError, ValueError):
            raise self.bad("(#100) session needs session_id, batch_seq and last_batch_flag") from None
        session = self._sessions.setdefault((audience_id, session_id), _ReplaceSession())
        if session.finished_seq is not None:
            if seq == session.finished_seq and session.final_response is not None:
                return session.final_response  # the retried last batch: already applied
            raise self.bad("(#100) This replace session has already finished")
        if seq < 1 or seq > max(session.batches, default=0) + 1:
            raise self.bad("(#100) batch_seq must follow the previous batch")
        session.batches[seq] = valid  # a retried batch replaces itself
        body["session_id"] = session_id
        if last:
            audience.members = dict.fromkeys(set().union(*session.batches.values()))
            session.finished_seq, session.final_response = seq, body
        return body

    # -- payload checks ------------------------------------------------------------------------------------
    def _json_param(self, params: dict[str, Any], name: str) -> Any:
        value = params.get(name)
        if value is None:
            raise self.bad(f"(#100) The parameter {name} is required")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise self.bad(f"(#100) {name} must be JSON") from None
        return value

    def _payload(self, params: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        payload = self._json_param(params, "payload")
        schema = payload.get("schema") if isinstance(payload, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        keys = [schema] if isinstance(schema, str) else schema
        if not isinstance(keys, list) or not keys or not isinstance(data, list) or not data:
            raise self.bad("(#100) payload needs a schema and non-empty data")
        keys = [_SINGLE_KEY_ALIASES.get(k, k) if len(keys) == 1 else k for k in keys]
        if any(k not in SCHEMA_KEYS for k in keys) or len(set(keys)) != len(keys):
            raise self.bad("(#100) payload.schema has an unknown or repeated field")
        if len(data) > MAX_ROWS_PER_REQUEST:
            raise self.bad(f"(#100) Too many users in one request: at most {MAX_ROWS_PER_REQUEST}")
        rows = [[row] if len(keys) == 1 and isinstance(row, str) else row for row in data]
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(keys):
                raise self.bad(f"(#100) data row {index} does not have {len(keys)} fields like the schema")
        return keys, rows

    def _rows(
        self, schema: list[str], data: list[list[Any]], reject_some: bool
    ) -> tuple[set[Hashable], dict[str, str], int]:
        """Valid row identities, samples of invalid ones (value -> reason) and the invalid count."""
        partial = reject_some and self.should_reject_partially()
        valid: set[Hashable] = set()
        samples: dict[str, str] = {}
        invalid = 0
        names = self.names_limit(self.max_samples)
        for row in data:
            cells = [(key, cell) for key, cell in zip(schema, row, strict=True) if cell != ""]
            problem = next(((str(cell), reason) for key, cell in cells if (reason := _cell_problem(key, cell))), None)
            identity = member_key({key: str(cell) for key, cell in cells})
            if problem is None and not cells:
                problem = ("", "row has no identifiers")
            if problem is None and partial and _stable_bucket(identity) == 0:
                problem = (_sample_value(identity), "record could not be processed")
            if problem is None:
                valid.add(identity)
                continue
            invalid += 1
            if len(samples) < names:
                samples[problem[0]] = problem[1]
        return valid, samples, invalid


def _cursor(audience_id: str) -> str:
    """An opaque paging cursor, as Meta's are (base64 of the audience's id here)."""
    return base64.urlsafe_b64encode(audience_id.encode()).decode()


def _uncursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _account_set(ids: Iterable[str] | None) -> set[str] | None:
    return {a.removeprefix("act_") for a in ids} if ids is not None else None


def _cell_problem(key: str, cell: Any) -> str | None:
    """Why Meta would count this cell's row as an invalid entry, or None."""
    if not isinstance(cell, str):
        return "value is not a string"
    if key == "MADID":
        return None if _MADID.match(cell) else "MADID must be a lowercase IDFA/AAID"
    if key == "EXTERN_ID":
        return None
    if key == "LOOKALIKE_VALUE":
        return None if re.fullmatch(r"\d+(\.\d+)?", cell) else "LOOKALIKE_VALUE must be a number"
    # Every other key (EMAIL, PHONE, GEN, DOBY, DOBM, DOBD, FN, FI, LN, CT, ST, ZIP, COUNTRY) is hashed, as Meta's
    # schema table requires: a clear "f" or "1985" is an invalid entry, as on Meta.
    return None if _SHA256.match(cell) else "value is not a SHA-256 hash (64 lowercase hex digits)"


def _sample_value(identity: Any) -> str:
    """The value a sample is keyed by: the row's first identifying field (email, phone, MADID, external id)."""
    cells = dict(identity)
    return next((cells[k] for k in ("EMAIL", "PHONE", "MADID", "EXTERN_ID") if k in cells), identity[0][1])


def _stable_bucket(identity: Any) -> int:
    """0..9 from the row's content, so a retried batch rejects the same rows (about one in ten)."""
    return hashlib.sha256(repr(identity).encode()).digest()[0] % 10


__all__ = ["FacebookSandbox"]
