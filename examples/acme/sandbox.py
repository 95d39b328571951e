"""A local emulator of the (fictional) Acme Ads Audience API v1, holding the example connector to its contract.

Behind a bearer token from `POST /oauth/token` (the base class serves it): the advertiser, its audiences (found by
`external_id`), and `members:add|remove` of up to 1,000 members; a malformed member is refused alone, by index.
"""

import hashlib
import re
from dataclasses import dataclass

from crm_activation import SandboxApp, SandboxAudience, SandboxError, SandboxRequest, SandboxResponse

TOKEN_PATH = "/oauth/token"
MAX_MEMBERS = 1000
FIELDS = frozenset({"email_sha256", "phone_sha256"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Audience(SandboxAudience):
    """An audience of one advertiser, found again by the external id its creator gave it."""

    advertiser: str
    external_id: str


class AcmeSandbox(SandboxApp[Audience]):
    """Acme's audience API in memory; it accepts exactly the OAuth client and refresh token it is built with."""

    platform = "acme"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "client_id": "sandbox-acme-client-0001",
        "client_secret": "sandbox-acme-secret-0002",
        "refresh_token": "sandbox-acme-refresh-0003",
    }
    token_path = TOKEN_PATH

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Check the bearer token, then route; errors are `{"error": {"code", "message"}}`."""
        if self.token_problem(request):
            raise SandboxError(401, {"error": {"code": "UNAUTHENTICATED", "message": "bad or expired token"}})
        match request.path.removeprefix("/v1/").split("/"), request.method:
            case ["advertisers", advertiser], "GET":
                return SandboxResponse(200, {"id": advertiser})
            case ["advertisers", advertiser, "audiences"], "GET":
                wanted = request.param("external_id")
                found = [{"id": i, "name": a.name, "external_id": a.external_id} for i, a in self.audiences.items()
                         if a.advertiser == advertiser and wanted in (None, a.external_id)]
                return SandboxResponse(200, {"audiences": found})
            case ["advertisers", advertiser, "audiences"], "POST":
                body = request.json()
                if not isinstance(body, dict) or sorted(body) != ["external_id", "name"] or not all(body.values()):
                    raise _invalid("an audience takes exactly a name and an external_id")
                audience_id = self.create_audience(Audience(advertiser, str(body["external_id"]), name=body["name"]))
                return SandboxResponse(201, {"id": audience_id})
            case ["audiences", audience_id, "members:add" | "members:remove" as action], "POST":
                if audience_id in self.audiences:
                    return self._members(self.audiences[audience_id], action == "members:add", request.json())
        raise SandboxError(404, {"error": {"code": "NOT_FOUND", "message": f"no {request.method} {request.path}"}})

    def _members(self, audience: Audience, adding: bool, body: object) -> SandboxResponse:
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list) or not 0 < len(members) <= MAX_MEMBERS:
            raise _invalid(f"members must hold 1 to {MAX_MEMBERS} members")
        partial, rejected = adding and self.should_reject_partially(), []
        for index, member in enumerate(members):
            if not isinstance(member, dict) or not member or not FIELDS.issuperset(member) or not all(
                isinstance(value, str) and _SHA256.match(value) for value in member.values()
            ):
                rejected.append({"index": index, "reason": f"not an object of lowercase SHA-256 hex {sorted(FIELDS)}"})
            elif partial and hashlib.sha256(repr(sorted(member.items())).encode()).digest()[0] < 26:
                rejected.append({"index": index, "reason": "not processed"})  # injected: ~1 in 10, by content
            elif adding:
                audience.add(member)
            else:
                audience.remove(member)
        return SandboxResponse(200, {"received": len(members), "rejected": rejected})


def _invalid(message: str) -> SandboxError:
    return SandboxError(400, {"error": {"code": "INVALID_ARGUMENT", "message": message}})
