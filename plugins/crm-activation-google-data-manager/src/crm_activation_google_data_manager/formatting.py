"""Data Manager's formatting rules, as identifier normalizers the engine applies before hashing.

Sources: "Format user data" (developers.google.com/data-manager/api/devguides/concepts/formatting) and Google's own
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
- e-mail: `email_google`, shared with DV360 since both feed Google's matching: trimmed and lowercased, and for
  gmail.com and googlemail.com addresses every dot and any `+tag` removed before the `@` ("If the email address has
  the gmail.com or googlemail.com domain: remove all dots (.) before the @ symbol; remove the plus sign (+) from the
  local part and all characters that follow it"), the domain kept as written, as Google's formatter does.
"""

from __future__ import annotations

SOURCE = "developers.google.com/data-manager/api/devguides/concepts/formatting; google.ads.datamanager_util.Formatter"
