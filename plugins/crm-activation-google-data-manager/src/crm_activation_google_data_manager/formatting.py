"""Data Manager's formatting rules, as identifier normalizers the engine applies before hashing.

Sources: "Format user data" (developers.google.com/data-manager/api/get-started/formatting) and Google's own
formatter in the Data Manager utility library (`google.ads.datamanager_util.Formatter`). Where the shared rules in
`crm_activation.normalization` give the same value they are reused, so a contact hashes alike for this connector
and for DV360, as docs/platform-apis.md asks:

- phone: `phone_e164` ("Include the plus sign (+) and the country code. All characters after the plus sign must
  be digits"). Google's formatter only strips non-digits; ours also parses national formats with the contact's
  country and refuses invalid numbers, which yields the same string for every number Google could match.
- given and family name: `name_trimmed_lower` (lowercase; Google's formatter trims, and its hashing step removes
  all whitespace before hashing, so "Mary Ann" is hashed as "maryann", exactly what the shared rule gives).
- region code: `country_upper` (ISO 3166-1 alpha-2, unhashed).
- postal code: `zip_clear` (unhashed; US codes cut to 5 digits, which Google accepts: "use either 5 digits or 5
  digits followed by a 4-digit extension"). Keeping DV360's value costs the small match-rate gain Google
  mentions for ZIP+4, in exchange for one Google postal code rule across both connectors.

The e-mail rule is the one difference from DV360 and lives here: Data Manager asks that dots be removed from the
local part of gmail.com and googlemail.com addresses, and its formatter does so; DV360's Customer Match page does
not. `+tags` are kept: neither the guide nor the formatter removes them.
"""

from __future__ import annotations

from crm_activation import InvalidIdentifier
from crm_activation import normalization as norm

#: "If the email address has the gmail.com or googlemail.com domain, remove all dots (.) before the @ symbol."
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
SOURCE = "developers.google.com/data-manager/api/get-started/formatting; google.ads.datamanager_util.Formatter"


def email_data_manager(value: str, country: str | None) -> str:
    """Trim, lowercase, check the address shape; for Gmail, drop the dots before the `@`.

    "Jane.Doe@GMail.com " -> "janedoe@gmail.com"; "Jane.Doe+news@example.com" -> "jane.doe+news@example.com".
    Whitespace inside an address is refused (as by `email_trimmed_lower` and Google's formatter, which raises
    "Email address contains intermediate whitespace"), never silently removed.
    """
    address = norm.email_trimmed_lower(value, country)
    local, _, domain = address.rpartition("@")
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "")
        if not local:
            raise InvalidIdentifier("email has nothing but dots before the @")
    return f"{local}@{domain}"
