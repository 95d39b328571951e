"""Benchmark: phone numbers read per second by `phonenumbers` and by the compiled reader, on one core.

Usage: python bench/bench_phones.py [N] [--seed S]

Takes the phones of N synthetic CRM contacts (bench/synth.py: E.164, international and national forms of valid
numbers of 25 countries, and its share of bad values), keeps each distinct (phone, country) pair once, as the
onboarding pipeline does, and reads them all with:
1. `reference_e164_or_reason`: `phonenumbers.parse`, `is_valid_number`, `format_number` (the reference);
2. `fast_e164_or_reason`: the compiled reader (core/sdk/phone_fast.py), counting the values it is unsure of;
3. `e164_or_reason`: what the pipeline calls, the compiled reader with `phonenumbers` for those values.
It checks that (1) and (3) give the same answer for every pair, then repeats on the same numbers rewritten in
harder shapes (`00` and bare digits, trunk "(0)", extensions, dots, tabs, stray `+`). One process, one thread;
the compiled reader's one-time cost (compiling each region's metadata on first use) is printed apart.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import generate_contacts

from crm_activation.sdk import normalization

Pairs = list[tuple[str, str | None]]


def crm_pairs(n: int, seed: int) -> Pairs:
    """The distinct (phone, country) pairs of n synthetic contacts, in first-seen order."""
    pairs = {(row["phone"], row["country"] or None): None for row in generate_contacts(n, seed) if row["phone"]}
    return list(pairs)


def reshaped(pairs: Pairs, seed: int) -> Pairs:
    """The same numbers as a messier CRM holds them (the E.164 answer stays the same for most)."""
    rng = random.Random(seed)
    out: dict[tuple[str, str | None], None] = {}
    for value, country in pairs:
        digits = value.lstrip("+").replace(" ", "").replace("-", "")
        shape = rng.randrange(8)
        if shape == 0 and value.startswith("+"):
            value = "00" + digits
        elif shape == 1 and value.startswith("+"):
            value, country = digits, rng.choice((None, country))
        elif shape == 2:
            value += rng.choice((" ext. 12", " x 7", " #301", ";ext=4"))
        elif shape == 3:
            value = value.replace(" ", ".")
        elif shape == 4:
            value = value.replace(" ", "\t")
        elif shape == 5 and value.startswith("+44"):
            value = "+44 (0)" + value[3:]
        elif shape == 6:
            value = "+" + value
        out[(value, country)] = None
    return list(out)


def rate(read: Callable[[str, str | None], object], pairs: Pairs) -> float:
    """Pairs read per second (best of three passes: the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for value, country in pairs:
            read(value, country)
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best


def report(title: str, pairs: Pairs) -> None:
    reference = [normalization.reference_e164_or_reason(value, country) for value, country in pairs]
    answers = [normalization.e164_or_reason(value, country) for value, country in pairs]
    unsure = sum(normalization.fast_e164_or_reason(value, country) is None for value, country in pairs)
    differ = sum(a != b for a, b in zip(answers, reference, strict=True))
    valid = sum(ok for _, ok in reference)
    slow = rate(normalization.reference_e164_or_reason, pairs)
    fast = rate(normalization.fast_e164_or_reason, pairs)
    both = rate(normalization.e164_or_reason, pairs)
    print(f"{title}: {len(pairs):,} distinct (phone, country) pairs, {valid / len(pairs):.1%} valid")
    print(f"  phonenumbers (reference):       {slow:10,.0f} phones/s  {1e6 / slow:6.2f} us/phone")
    print(f"  compiled reader alone:          {fast:10,.0f} phones/s  {1e6 / fast:6.2f} us/phone"
          f"  (unsure, left to phonenumbers: {unsure:,} = {unsure / len(pairs):.2%})")
    print(f"  e164_or_reason (with fallback): {both:10,.0f} phones/s  {1e6 / both:6.2f} us/phone"
          f"  = {both / slow:.1f} x the reference")
    print(f"  answers differing from the reference: {differ:,} of {len(pairs):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=200_000, help="synthetic contacts (default 200,000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    pairs = crm_pairs(args.n, args.seed)
    first_of_each_country = {country: (value, country) for value, country in reversed(pairs)}
    start = time.perf_counter()
    for value, country in first_of_each_country.values():  # compiles the metadata of the regions they need
        normalization.fast_e164_or_reason(value, country)
    print(f"compiled reader, first use: {time.perf_counter() - start:.3f} s for the first phone of each of "
          f"{len(first_of_each_country)} country values (metadata compiled once per region and process)")
    report(f"CRM phones of {args.n:,} contacts", pairs)
    report("the same numbers in harder shapes", reshaped(pairs, args.seed))


if __name__ == "__main__":
    main()
