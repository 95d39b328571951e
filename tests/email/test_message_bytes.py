"""`message_bytes` writes exactly what `envelope_bytes(build_message(...))` writes, apart from the random boundary."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from crm_activation.email.message import build_message, envelope_bytes, message_bytes
from crm_activation.email.rendering import RenderedMessage, TemplateRenderer
from crm_activation.email.samples import SAMPLE_CONTACTS, sample_config, sample_context
from crm_activation.email.unsubscribe import links

from .conftest import UNSUB_KEY

CONFIG = sample_config()
UNSUBSCRIBE = links(SecretStr(UNSUB_KEY), "wb", "c1", CONFIG.unsubscribe_url, CONFIG.unsubscribe_mailbox)
BOUNDARY = "===============0123456789012345678=="


def both(rendered: RenderedMessage, **headers) -> tuple[bytes, bytes]:
    """The two builders' bytes for the same message, the reference given the fast one's boundary."""
    values = dict(from_address=CONFIG.from_address, to_address="ann@example.com", message_id="<m1@mail.example.com>",
                  unsubscribe=UNSUBSCRIBE, date=datetime(2026, 11, 2, 15, 0, tzinfo=UTC)) | headers
    reference = build_message(rendered, **values)
    reference.set_boundary(BOUNDARY)
    return envelope_bytes(reference), message_bytes(rendered, boundary=BOUNDARY, **values)


@pytest.mark.parametrize("sample", sorted(SAMPLE_CONTACTS))
def test_every_packaged_template_and_variant_is_written_byte_for_byte(sample):
    renderer = TemplateRenderer()
    context = sample_context(SAMPLE_CONTACTS[sample], CONFIG)
    for template in renderer.templates():
        for variant in [None, *renderer.variants(template)]:
            rendered = renderer.render_message(template, variant, context)
            reference, fast = both(rendered, to_name=context["full_name"], reply_to="Ré Ply <reply@example.com>",
                                   feedback_id="wb:awareness-1:warm:fh")
            assert fast == reference, (template, variant)


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
lines = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(subject=names.filter(lambda s: s.strip() and "\n" not in s and "\r" not in s), to_name=names, text=lines,
       html=lines, reply=st.booleans())
def test_any_subject_name_and_body_is_written_byte_for_byte(subject, to_name, text, html, reply):
    rendered = RenderedMessage(subject=" ".join(subject.split()), text=text, html=html)
    try:
        reference = both(rendered, to_name=to_name, reply_to="Zoë <z@example.com>" if reply else None)
    except ValueError as error:  # what one builder refuses, the other refuses too
        with pytest.raises(ValueError):
            message_bytes(rendered, from_address=CONFIG.from_address, to_address="ann@example.com",
                          message_id="<m1@mail.example.com>", unsubscribe=UNSUBSCRIBE, to_name=to_name)
        assert str(error)
        return
    assert reference[1] == reference[0]


def test_the_boundary_is_random_in_the_generators_format_and_never_a_line_of_the_parts():
    rendered = RenderedMessage("Hi", "--===============0000000000000000000==\ntext", "<p>html</p>")
    seen = set()
    for _ in range(20):
        data = message_bytes(rendered, from_address=CONFIG.from_address, to_address="ann@example.com",
                             message_id="<m1@mail.example.com>", unsubscribe=UNSUBSCRIBE)
        [boundary] = re.findall(rb'boundary="(={15}\d{19}==)"', data)
        assert data.count(b"--" + boundary) == 3
        seen.add(boundary)
    assert len(seen) == 20
