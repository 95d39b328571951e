"""Identity clusters: which records are one person, and that every record of a person gets one holdout group."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_activation.pipeline.clusters import ClusterBuilder, ClusterStats, key_digest
from crm_activation.pipeline.holdout import assign_group
from crm_activation.pipeline.link_keys import EMAIL_FORMS, LinkKeys, maid_key
from crm_activation.sdk.errors import InvalidIdentifier
from crm_activation.sdk.identifier_kinds import IdentifierKind as K
from crm_activation.sdk.normalization import sha256_hex

KEYS = LinkKeys()


def keys(contact_id: str | None = None, **identifiers: str) -> set[str]:
    return set(KEYS.keys(contact_id, {K(kind): value for kind, value in identifiers.items()}))


def cluster(records: list[tuple[str | None, dict[str, str]]]) -> tuple[list[str | None], ClusterStats]:
    """Each record's anchor (its own contact id for a one-record cluster), and how the records grouped."""
    contact_ids, digests, owners = [], [], []
    for record, (contact_id, identifiers) in enumerate(records):
        contact_ids.append(contact_id)
        for key in keys(contact_id, **identifiers):
            digests.append(key_digest(key))
            owners.append(record)
    builder = ClusterBuilder()
    builder.add_batch(contact_ids, np.array(digests, dtype=np.int64), np.array(owners, dtype=np.int32))
    clusters = builder.finish()
    try:
        return [clusters.anchor_of_record(i) or contact_ids[i] for i in range(len(records))], clusters.stats
    finally:
        clusters.close()


def test_spellings_of_one_mailbox_share_a_key():
    spellings = [" J.Doe@Gmail.com", "jdoe@gmail.com", "j.d.o.e+news@googlemail.com", "JDOE+x@GMAIL.COM"]
    common = set.intersection(*(keys(email=s) for s in spellings))
    assert common


def test_other_domains_keep_their_dots_but_lose_plus_tags():
    assert keys(email="j.doe@example.com") & keys(email="J.Doe+promo@example.com")
    assert not keys(email="j.doe@example.com") & keys(email="jdoe@example.com")


def test_a_pre_hashed_address_meets_the_clear_address_it_hashes():
    prehashed_meta = sha256_hex("ann@example.com")
    assert keys(email=prehashed_meta.upper()) & keys(email=" Ann@Example.com ")
    prehashed_google = sha256_hex("jdoe@gmail.com")
    assert keys(email=prehashed_google) & keys(email="J.Doe@gmail.com")


def test_phone_spellings_meet_in_e164_and_pre_hashed_phones_meet_them():
    national = keys(phone="(201) 555-0123", country="US")
    assert national & keys(phone="+1 201 555 0123") & keys(phone="001-201-555-0123")
    assert national & keys(phone=sha256_hex("12015550123"))
    assert national & keys(phone=sha256_hex("+12015550123"))
    assert not keys(phone="not a phone")


def test_default_country_lets_national_phones_link():
    with_default = LinkKeys(default_country="GB")
    national = set(with_default.keys(None, {K.PHONE: "020 7946 0958"}))
    assert national & keys(phone="+44 20 7946 0958")


def test_mobile_ad_ids_link_in_any_spelling_but_the_opt_out_id_links_nobody():
    maid = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    assert keys(maid=maid) == keys(maid=maid.lower().replace("-", ""))
    assert maid_key("00000000-0000-0000-0000-000000000000") is None
    assert not keys(maid="00000000000000000000000000000000")


def test_placeholder_ids_link_nobody():
    """"N/A" or "0" in many records' external id would make them one person with one holdout draw."""
    for placeholder in ["N/A", " null ", "Unknown", "0", "000-000", "-", "n/a"]:
        assert not keys(external_id=placeholder) and not keys(xandr_uid=placeholder), placeholder
    assert keys(external_id="mkt-0") and keys(xandr_uid="2382377119975374519") and keys(uid2="NA-1")


def test_kinds_do_not_meet_each_other():
    assert not keys("42") & keys(external_id="42")
    assert not keys(uid2="abc") & keys(rampid="abc")


def test_clusters_are_transitive_and_anchored_on_the_smallest_contact_id():
    anchors, stats = cluster(
        [
            ("C9", {"email": "ann@example.com"}),
            ("C5", {"email": "ANN@example.com", "phone": "+12015550123"}),
            ("C7", {"phone": "2015550123", "country": "US", "maid": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}),
            ("C1", {"email": "bob@example.org"}),
        ]
    )
    assert anchors == ["C5", "C5", "C5", "C1"]
    assert stats.records == 4 and stats.clusters == 2
    assert stats.multi_record_clusters == 1 and stats.largest_cluster == 3


def test_rejected_rows_still_link_their_person():
    # a row without a contact id and a duplicate row of C2 (both rejected by onboarding) bridge C2 and C8
    anchors, stats = cluster(
        [
            ("C2", {"email": "ann@example.com"}),
            (None, {"email": "ann@example.com", "external_id": "crm-77"}),
            ("C8", {"external_id": "crm-77"}),
            ("C3", {"email": "cy@example.net"}),
            ("C3", {"email": "dee@example.com"}),
            ("C4", {"email": "DEE@example.com"}),
        ]
    )
    assert anchors == ["C2", "C2", "C2", "C3", "C3", "C3"]
    assert stats.multi_record_clusters == 2 and stats.largest_cluster == 3


people = st.lists(
    st.tuples(
        st.text(alphabet="ABC123", min_size=1, max_size=3),
        st.sampled_from(["ann@example.com", "Ann@Example.com ", "a.n.n@gmail.com", "ann@googlemail.com", "", "b@x.io"]),
        st.sampled_from(["", "+12015550123", "(201) 555-0123", "+12015550199"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(records=people, seed=st.integers(0, 2**32 - 1))
def test_groups_never_depend_on_input_order_and_a_cluster_has_one_group(records, seed):
    rows = [(cid, {"email": email, "phone": phone, "country": "US"}) for cid, email, phone in records]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    first = cluster(rows)[0]
    shuffled = cluster([rows[i] for i in order])[0]
    assert [shuffled[order.index(i)] for i in range(len(rows))] == first
    groups = [assign_group("salt", anchor, 0.5) for anchor in first]
    for a, (cid_a, ids_a) in enumerate(rows):
        for b, (cid_b, ids_b) in enumerate(rows):
            if keys(cid_a, **ids_a) & keys(cid_b, **ids_b):
                assert groups[a] is groups[b], (a, b)


@given(
    local=st.text(alphabet="abcXYZ09._+-é ", max_size=10),
    domain=st.sampled_from(["gmail.com", "GoogleMail.com", "example.com", "ex-ample.co.uk", "a.b", "x@y.com"]),
    pad=st.sampled_from(["", " "]),
)
def test_the_plain_address_shortcut_gives_the_keys_of_every_form(local: str, domain: str, pad: str) -> None:
    value = f"{pad}{local}@{domain}{pad}"
    every_form = set()
    for form in EMAIL_FORMS:
        try:
            every_form.add("e:" + sha256_hex(form(value, None)))
        except InvalidIdentifier:
            continue
    assert set(LinkKeys._hashed_forms("e:", value, EMAIL_FORMS, None)) == every_form
