"""Deterministic synthetic CRM contacts (and an identity match table) for the demo, tests and benchmarks.

    python bench/synth.py N OUT.csv [--identity OUT_identity.csv] [--seed S]

Rows look like a freelance marketplace's CRM export across 25 countries (about 55% from US, GB, CA and AU):
names in each country's languages, addresses with plausible postal codes, phone numbers that libphonenumber
accepts as valid for the country (written E.164, international or national), consent flags spelled the many
ways CRMs spell them, and `history_*` columns. A fixed, low share of rows is deliberately bad — an invalid
email, a phone with letters, a blank contact id, an unknown country — and some emails arrive pre-hashed
(SHA-256 of the trimmed, lower-cased address), so the rejects path and the pre-hashed path are exercised.

Emails use subdomains of the IANA-reserved example.com/.net/.org, so no generated address can belong to
anyone. The same N and seed always give the same files; the identity file never changes the contacts file.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import random
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

_HEADER = (
    "contact_id,email,phone,first_name,last_name,city,state,zip,country,maid,external_id,segment,lifecycle_stage,"
    "funnel_stage,preferred_categories,score,consent_ad_user_data,consent_ad_personalization,consent_email,"
    "email_unsubscribed,history_last_project,history_hires,history_last_active_days"
)
COLUMNS = _HEADER.split(",")
IDENTITY_COLUMNS = ["contact_id", "maid", "uid2", "rampid", "xandr_uid"]

NAMES = {
    "en": (
        "James Mary Olivia Liam Emma Noah Ava William Sophia Lucas Mia Ethan Chloe Jack Grace Aisha Mateo Zoe",
        "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Thomas Moore Martin Clark Walker "
        "O'Brien Nguyen Patel",
    ),
    "de": (
        "Lukas Anna Jonas Lea Leon Hannah Felix Marie Jürgen Sören Emilia Maximilian",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Koch Hofmann Gruber",
    ),
    "fr": (
        "Louis Camille Hugo Léa Chloé Théo Manon Gabriel Inès Jules Zoé Noé",
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Lefèvre Moreau Girard Laurent",
    ),
    "es": (
        "Hugo Lucía Martín Sofía Mateo María Pablo Valentina José Camila Álvaro Ximena",
        "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Hernández Núñez Ruiz",
    ),
    "it": (
        "Leonardo Giulia Francesco Sofia Alessandro Aurora Lorenzo Chiara Matteo Giorgia Niccolò Ginevra",
        "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo",
    ),
    "nl": (
        "Daan Emma Sem Julia Lucas Tess Milan Sophie Finn Anna Noor Lotte",
        "de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssens|Visser|Smit|Peeters|Maes|Willems",
    ),
    "nordic": (
        "Erik Ingrid Lars Astrid Mikael Sofie Søren Freja Oskar Aino Björn Maja",
        "Andersson Johansson Hansen Nielsen Larsen Olsen Virtanen Korhonen Lindqvist Berg Jørgensen Mäkinen",
    ),
    "pt": (
        "João Ana Pedro Beatriz Lucas Mariana Gabriel Júlia Rafael Larissa Tiago Inês",
        "Silva Santos Oliveira Souza Pereira Costa Rodrigues Almeida Ferreira Carvalho Gonçalves Lima",
    ),
    "pl": (
        "Jakub Zofia Kacper Zuzanna Szymon Julia Michał Maja Paweł Łucja",
        "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak",
    ),
    "in": (
        "Aarav Priya Vivaan Ananya Arjun Diya Rohan Isha Rahul Kavya Sanjay Meera",
        "Sharma Patel Singh Kumar Gupta Reddy Iyer Nair Das Mehta Banerjee Joshi",
    ),
    "jp": (
        "Haruto Yui Sota Hina Yuto Aoi Ren Sakura Kaito Yuna",
        "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato",
    ),
    "sg": (
        "Wei Ming|Hui Min|Jun Jie|Xin Yi|Rajesh|Siti|Kai Wen|Mei Ling|Arjun|Nur",
        "Tan Lim Lee Ng Ong Wong Goh Chua Koh Teo",
    ),
}

# country: (language, weight, [(city, state, postal pattern)]); '#' = digit, '@' = letter.
COUNTRIES = {
    "US": ("en", 25.0, [("New York", "NY", "100##"), ("San Francisco", "CA", "941##"), ("Austin", "TX", "787##"),
                        ("Chicago", "IL", "606##"), ("Seattle", "WA", "981##"), ("Miami", "FL", "331##")]),
    "GB": ("en", 12.0, [("London", "", "SW1A #@@"), ("Manchester", "", "M# #@@"), ("Edinburgh", "", "EH# #@@"),
                        ("Bristol", "", "BS# #@@")]),
    "CA": ("en", 9.0, [("Toronto", "ON", "M5V #@#"), ("Vancouver", "BC", "V6B #@#"), ("Montréal", "QC", "H2X #@#")]),
    "AU": ("en", 9.0, [("Sydney", "NSW", "2000"), ("Melbourne", "VIC", "3000"), ("Brisbane", "QLD", "4000")]),
    "DE": ("de", 3.0, [("Berlin", "BE", "101##"), ("München", "BY", "803##"), ("Hamburg", "HH", "203##")]),
    "FR": ("fr", 3.0, [("Paris", "IDF", "750##"), ("Lyon", "ARA", "6900#"), ("Marseille", "PAC", "130##")]),
    "ES": ("es", 2.5, [("Madrid", "MD", "280##"), ("Barcelona", "CT", "080##"), ("Valencia", "VC", "460##")]),
    "IT": ("it", 2.5, [("Roma", "RM", "001##"), ("Milano", "MI", "201##"), ("Torino", "TO", "101##")]),
    "NL": ("nl", 2.0, [("Amsterdam", "NH", "10## @@"), ("Rotterdam", "ZH", "30## @@"), ("Utrecht", "UT", "35## @@")]),
    "BE": ("nl", 1.5, [("Brussels", "BRU", "1000"), ("Antwerpen", "VAN", "2000"), ("Gent", "VOV", "9000")]),
    "SE": ("nordic", 1.5, [("Stockholm", "AB", "111 ##"), ("Göteborg", "O", "411 ##"), ("Malmö", "M", "211 ##")]),
    "NO": ("nordic", 1.2, [("Oslo", "03", "01##"), ("Bergen", "46", "50##")]),
    "DK": ("nordic", 1.2, [("København", "84", "1###"), ("Aarhus", "82", "8000")]),
    "FI": ("nordic", 1.2, [("Helsinki", "18", "001##"), ("Tampere", "11", "331##")]),
    "IE": ("en", 1.5, [("Dublin", "D", "D0# @#@#"), ("Cork", "CO", "T12 @#@#")]),
    "PT": ("pt", 1.3, [("Lisboa", "11", "1###-###"), ("Porto", "13", "4###-###")]),
    "PL": ("pl", 2.0, [("Warszawa", "MZ", "0#-###"), ("Kraków", "MA", "3#-###"), ("Wrocław", "DS", "5#-###")]),
    "AT": ("de", 1.3, [("Wien", "9", "1###"), ("Graz", "6", "80##")]),
    "CH": ("de", 1.3, [("Zürich", "ZH", "80##"), ("Genève", "GE", "12##"), ("Basel", "BS", "40##")]),
    "IN": ("in", 4.5, [("Bengaluru", "KA", "5600##"), ("Mumbai", "MH", "4000##"), ("Delhi", "DL", "1100##")]),
    "BR": ("pt", 3.5, [("São Paulo", "SP", "01###-###"), ("Rio de Janeiro", "RJ", "20###-###")]),
    "MX": ("es", 2.5, [("Ciudad de México", "CMX", "06###"), ("Guadalajara", "JAL", "44###")]),
    "JP": ("jp", 2.5, [("Tokyo", "13", "1##-####"), ("Osaka", "27", "5##-####")]),
    "SG": ("sg", 1.5, [("Singapore", "", "0#####")]),
    "NZ": ("en", 1.5, [("Auckland", "AUK", "10##"), ("Wellington", "WGN", "6011")]),
}
CATEGORIES = [
    "web development", "design", "writing", "marketing", "video", "data science", "mobile apps",
    "translation", "accounting", "customer support",
]
PROJECTS = [
    "logo design", "website redesign", "landing page", "mobile app", "blog articles", "seo audit",
    "product video", "data dashboard", "bookkeeping", "translation",
]
PROVIDERS = ["mail", "inbox", "webmail", "post", "studio", "hq"]
TRUE_SPELLINGS = ["true"] * 6 + ["yes", "1", "granted", "TRUE", "Y"]
FALSE_SPELLINGS = ["false"] * 6 + ["no", "0", "denied", "FALSE", "N"]
def _pattern(rng: random.Random, pattern: str) -> str:
    chars = [rng.choice("0123456789") if c == "#" else rng.choice("ABCDEFGHJKLMNPRSTUVWXY") if c == "@" else c
             for c in pattern]
    return "".join(chars)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded.lower() if c.isalnum())


@dataclass(frozen=True)
class _PhonePlan:
    """How to draw valid, mostly distinct numbers for one country: a valid prefix and a free tail of digits."""

    country_code: int
    prefix: str
    free_digits: int


_phone_plans: dict[str, _PhonePlan] = {}


def _phone_plan(country: str) -> _PhonePlan:
    """Find the longest tail of libphonenumber's example mobile number that can vary and stay valid.

    Checked once per country on a sample of tails, so drawing a number later costs no validation: that keeps a
    million contacts fast to generate, and a tail of six or seven digits keeps shared numbers as rare as in a
    real CRM (households, switchboards).
    """
    if country in _phone_plans:
        return _phone_plans[country]
    example = phonenumbers.example_number_for_type(country, PhoneNumberType.MOBILE) or phonenumbers.example_number(
        country
    )
    assert example is not None, f"libphonenumber has no example number for {country}"
    national = str(example.national_number)
    rng = random.Random(country)
    plan = _PhonePlan(example.country_code, national, 0)
    for free in (7, 6, 5, 4, 3):
        if free >= len(national) - 1:
            continue
        prefix = national[:-free]
        trial = (phonenumbers.PhoneNumber(country_code=example.country_code,
                                          national_number=int(prefix + f"{rng.randrange(10**free):0{free}d}"))
                 for _ in range(40))
        if all(phonenumbers.is_valid_number_for_region(n, country) for n in trial):
            plan = _PhonePlan(example.country_code, prefix, free)
            break
    _phone_plans[country] = plan
    return plan


def _phone(country: str, rng: random.Random) -> tuple[str, str, str]:
    """A valid number for the country in E.164, international and national format."""
    plan = _phone_plan(country)
    tail = f"{rng.randrange(10**plan.free_digits):0{plan.free_digits}d}" if plan.free_digits else ""
    number = phonenumbers.PhoneNumber(country_code=plan.country_code, national_number=int(plan.prefix + tail))
    return (
        f"+{plan.country_code}{plan.prefix}{tail}",
        phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL),
    )


def _flag(rng: random.Random, p_true: float, p_blank: float) -> str:
    draw = rng.random()
    if draw < p_blank:
        return ""
    return rng.choice(TRUE_SPELLINGS) if draw < p_blank + p_true else rng.choice(FALSE_SPELLINGS)


def generate_contacts(n: int, seed: int = 7) -> Iterator[dict[str, str]]:
    """Yield `n` synthetic CRM rows (all values strings, columns as in `COLUMNS`); the same seed, the same rows."""
    rng = random.Random(seed)
    countries = list(COUNTRIES)
    weights = [COUNTRIES[c][1] for c in countries]
    previous_email = ""
    for i in range(n):
        country = rng.choices(countries, weights)[0]
        language, _weight, cities = COUNTRIES[country]
        firsts, lasts = NAMES[language]
        first = rng.choice(firsts.split("|") if "|" in firsts else firsts.split())
        last = rng.choice(lasts.split("|") if "|" in lasts else lasts.split())
        city, state, postal = rng.choice(cities)
        # Unique per contact, except every 150th contact, which reuses the previous address: CRMs hold duplicate
        # records of one person, and the engine must keep such a pair in one holdout group's reach.
        tld = rng.choice(("com", "net", "org"))
        email = f"{_ascii(first)}.{_ascii(last)}{i}@{rng.choice(PROVIDERS)}.example.{tld}"
        if i % 150 == 149:
            email = previous_email
        previous_email = email
        e164, international, national_format = _phone(country, rng)
        phone = rng.choices((e164, international, national_format), (2, 1, 1))[0] if rng.random() < 0.6 else ""
        active_days = int(rng.triangular(0, 900, 60))
        hires = int(rng.expovariate(1 / 3)) if rng.random() < 0.8 else 0
        if active_days > 365:
            lifecycle = "inactive"
        elif active_days > 180:
            lifecycle = "lapsing"
        else:
            lifecycle = "loyal" if hires >= 5 else "active"
        funnel = "awareness" if hires == 0 else "consideration" if hires < 3 else "conversion"
        if rng.random() < 0.05:
            funnel = ""  # the campaign's default stage applies
        eu = country in {"DE", "FR", "ES", "IT", "NL", "BE", "SE", "NO", "DK", "FI", "IE", "PT", "PL", "AT", "CH", "GB"}
        base = {"inactive": 0.15, "lapsing": 0.35, "active": 0.6, "loyal": 0.8}[lifecycle]
        score = min(1.0, max(0.0, rng.gauss(base, 0.15)))
        row = {
            "contact_id": f"C{i + 1:06d}",
            "email": email,
            "phone": phone,
            "first_name": first,
            "last_name": last,
            "city": city,
            "state": state,
            "zip": _pattern(rng, postal),
            "country": country,
            "maid": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.35 else "",
            "external_id": f"mkt-{rng.getrandbits(40):010x}" if rng.random() < 0.5 else "",
            "segment": "",
            "lifecycle_stage": lifecycle,
            "funnel_stage": funnel,
            "preferred_categories": "|".join(rng.sample(CATEGORIES, rng.choice((0, 1, 1, 2, 2, 3)))),
            "score": f"{score:.2f}",
            "consent_ad_user_data": _flag(rng, 0.75 if eu else 0.9, 0.04),
            "consent_ad_personalization": _flag(rng, 0.7 if eu else 0.88, 0.04),
            "consent_email": _flag(rng, 0.8, 0.05),
            "email_unsubscribed": rng.choice(TRUE_SPELLINGS) if rng.random() < 0.07 else rng.choice(["false", ""]),
            "history_last_project": rng.choice(PROJECTS) if hires else "",
            "history_hires": str(hires),
            "history_last_active_days": str(active_days),
        }
        if i % 17 == 5:
            row["email"] = f"  {email[0].upper()}{email[1:].replace('.example', '.Example')} "
        if i % 20 == 3:
            row["email"] = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        # Deliberately bad rows, at fixed positions so every run and every test sees the same ones.
        if i % 97 == 13:
            row["email"] = email.replace("@", "-at-")
        if i % 89 == 29:
            row["phone"] = phone[:-4] + "CALL"
        if i % 211 == 11:
            row["contact_id"] = ""
        if i % 193 == 50:
            row["country"] = "Atlantis" if i % 2 else "ZZ"
        yield row


def identity_row(contact: dict[str, str], rng: random.Random) -> dict[str, str] | None:
    """A match-table row for about a third of contacts (None for the rest)."""
    if not contact["contact_id"] or rng.random() >= 0.35:
        return None
    return {
        "contact_id": contact["contact_id"],
        # Often a different device than the CRM's own maid: enrichment must never override the CRM's value.
        "maid": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.6 else "",
        "uid2": base64.b64encode(rng.randbytes(32)).decode() if rng.random() < 0.7 else "",
        "rampid": "XY" + base64.urlsafe_b64encode(rng.randbytes(51)).decode() if rng.random() < 0.6 else "",
        "xandr_uid": str(rng.randrange(10**18, 10**19)) if rng.random() < 0.5 else "",
    }


def write_files(n: int, out: Path, identity: Path | None = None, seed: int = 7) -> tuple[int, int]:
    """Write the contacts CSV (and the identity CSV); returns the number of rows in each."""
    id_rng = random.Random(f"{seed}:identity")
    written = matched = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        id_handle = identity.open("w", newline="", encoding="utf-8") if identity else None
        try:
            id_writer = csv.DictWriter(id_handle, IDENTITY_COLUMNS, lineterminator="\n") if id_handle else None
            if id_writer:
                id_writer.writeheader()
            for contact in generate_contacts(n, seed):
                writer.writerow(contact)
                written += 1
                if id_writer and (match := identity_row(contact, id_rng)):
                    id_writer.writerow(match)
                    matched += 1
            if id_writer:  # ids the CRM does not hold: a match table always has some
                for k in range(max(1, n // 100)):
                    id_writer.writerow({"contact_id": f"X{k + 1:06d}", "maid": str(uuid.UUID(int=k + 1, version=4))})
                    matched += 1
        finally:
            if id_handle:
                id_handle.close()
    return written, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="number of contacts")
    parser.add_argument("out", type=Path, help="contacts CSV to write")
    parser.add_argument("--identity", type=Path, help="identity match table CSV to write")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    written, matched = write_files(args.n, args.out, args.identity, args.seed)
    print(f"{args.out}: {written} contacts" + (f"; {args.identity}: {matched} identity rows" if args.identity else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
