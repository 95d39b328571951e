"""Rendering: strict errors that name template, line and variable; filters; escaping; SSTI blocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_activation.email.context import build_context, plain
from crm_activation.email.filters import first_name, format_date, format_money, join_categories, pluralize
from crm_activation.email.rendering import TemplateError, TemplateRenderer, packaged_templates
from crm_activation.email.samples import HOSTILE_TEXT, SAMPLE_CONTACTS, sample_config, sample_context
from crm_activation.sdk.identifier_kinds import IdentifierKind

from .conftest import make_contact

BASE = {"first_name": "Ada", "history": {"hires": 2}, "unsubscribe_url": "https://u.example/x"}


def make_templates(root: Path, files: dict[str, str]) -> TemplateRenderer:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return TemplateRenderer(root)


def three(subject: str = "Hi", text: str = "Hello", html: str = "<p>Hello</p>", name: str = "t") -> dict[str, str]:
    return {f"{name}/subject.txt.j2": subject, f"{name}/body.txt.j2": text, f"{name}/body.html.j2": html}


def test_missing_variable_names_template_line_and_variable(tmp_path):
    text = "Hello {{ first_name }},\n\n{% if true %}\n  you hired {{ history.hirez }} times\n{% endif %}\n"
    renderer = make_templates(tmp_path, three(text=text))
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    error = caught.value
    assert (error.template, error.line, error.variable, error.kind) == ("t/body.txt.j2", 4, "hirez", "undefined")
    assert str(error).startswith("t/body.txt.j2:4: undefined variable 'hirez'")
    assert "you hired {{ history.hirez }} times" in str(error)  # the offending source line, for the email team


def test_missing_top_level_variable_and_error_inside_an_include(tmp_path):
    files = three(subject="{{ nmae }}", html='{% include "_parts/footer.html.j2" %}')
    files["_parts/footer.html.j2"] = "<p>ok</p>\n<a href='{{ unsubscribe_link }}'>x</a>"
    renderer = make_templates(tmp_path, files)
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    assert (caught.value.template, caught.value.line, caught.value.variable) == ("t/subject.txt.j2", 1, "nmae")
    with pytest.raises(TemplateError) as caught:
        renderer.render_part("t/body.html.j2", BASE)
    assert (caught.value.template, caught.value.line, caught.value.variable) == (
        "_parts/footer.html.j2", 2, "unsubscribe_link")
    assert renderer.templates() == ["t"]  # `_parts` is not a template


def test_syntax_error_names_file_and_line(tmp_path):
    renderer = make_templates(tmp_path, three(html="<p>\n{% if first_name %}\n{{ first_name }\n"))
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    assert caught.value.kind == "syntax" and caught.value.template == "t/body.html.j2" and caught.value.line == 3


def test_optional_data_can_be_guarded(tmp_path):
    text = "{{ history.last_project|default('your project') }} {% if history.nope is defined %}x{% endif %}"
    renderer = make_templates(tmp_path, three(text=text))
    assert renderer.render_message("t", None, BASE).text == "your project "


SSTI = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "security"),
    ("{{ ().__class__.__base__.__subclasses__() }}", "security"),
    ("{{ cycler.__init__.__globals__ }}", "security"),  # cycler is gone, and `__init__` is refused before that
    ("{{ cycler }}", "undefined"),
    ("{{ joiner }}", "undefined"),
    ("{{ namespace.__init__.__globals__ }}", "security"),
    ("{{ range.__globals__ }}", "security"),
    ("{{ self._TemplateReference__context }}", "security"),
    ("{{ self }}", "security"),
    ("{{ config }}", "undefined"),
    ("{{ request.application.__globals__ }}", "undefined"),
    ("{{ history.__class__ }}", "security"),
    ("{{ history.items }}", "security"),  # a bound method would print its repr and address
    ("{{ history|attr('__class__') }}", "security"),
    ("{{ '{0.__class__}'.format(history) }}", "security"),
    ("{% set x = history.update({'a': 1}) %}{{ x }}", "security"),
    ("{{ 'x' * 10000000 }}", "security"),
    ("{{ 9 ** 99999 }}", "security"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "undefined"),
]


@pytest.mark.parametrize(("payload", "kind"), SSTI)
@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_template_injection_payloads_are_blocked(tmp_path, payload, kind, part):
    renderer = make_templates(tmp_path, three(**{part: payload}))
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    assert caught.value.kind == kind
    message = str(caught.value)
    for leak in ("<class '", "<function", "<built-in", "object at 0x", "uid=", "__builtins__': {"):
        assert leak not in message


def test_filters_are_plain_functions_not_reachable_as_objects(tmp_path):
    renderer = make_templates(tmp_path, three(text="{{ money }}"))
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    assert caught.value.kind == "undefined"


def test_hostile_contact_data_is_escaped_in_html_and_never_evaluated():
    renderer = TemplateRenderer()
    config = sample_config()
    for template in renderer.templates():
        for variant in [None, *renderer.variants(template)]:
            rendered = renderer.render_message(template, variant, sample_context(SAMPLE_CONTACTS["hostile"], config))
            assert "<script>alert(1)</script>" not in rendered.html
            assert "<b>bold</b>" not in rendered.html
            assert "49" not in rendered.text + rendered.subject + rendered.html.replace("#", "")
            assert "\n" not in rendered.subject
    rendered = renderer.render_message("we-miss-you", None, sample_context(SAMPLE_CONTACTS["hostile"], config))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;{{ 7*7 }}{% raw %}" in rendered.html
    assert HOSTILE_TEXT in rendered.text  # the text part is literal: no escaping, no evaluation
    assert "<b>bold</b>" in rendered.text


def test_subject_is_one_line_even_with_line_breaks_in_data(tmp_path):
    renderer = make_templates(tmp_path, three(subject="Hi {{ first_name }}\n!"))
    rendered = renderer.render_message("t", None, {**BASE, "first_name": "Eve\r\nBcc: victim@example.com"})
    assert rendered.subject == "Hi Eve Bcc: victim@example.com !"


def test_variants_override_files_and_see_the_variant_variable():
    renderer = TemplateRenderer()
    context = sample_context(SAMPLE_CONTACTS["typical"], sample_config())
    base = renderer.render_message("we-miss-you", None, context)
    warm = renderer.render_message("we-miss-you", "warm", context)
    brief = renderer.render_message("we-miss-you", "brief", context)
    assert base.subject == "We miss you, Maria"
    assert warm.subject == "Maria, we miss working with you"
    assert brief.subject == "New web design and copywriting talent is ready when you are"
    assert "Your next project is a few clicks away." in brief.text and "few clicks" not in warm.text
    assert "utm_content=we-miss-you-brief" in brief.text
    assert renderer.variants("we-miss-you") == ["brief", "warm"]
    assert renderer.templates() == ["coupon-offer", "coupon-reminder", "success-stories", "we-miss-you"]


def test_packaged_templates_are_installed_package_data():
    folder = packaged_templates()
    assert (folder / "we-miss-you" / "body.html.j2").is_file() and (folder / "_layout" / "base.html.j2").is_file()


def test_money_filter():
    assert format_money(100, "USD", "en_US") == "$100"
    assert format_money(1234.5, "USD", "en_US") == "$1,234.50"
    assert format_money(1234567.891, "EUR", "de_DE") == "1.234.567,89\u00a0€"
    assert format_money(1234.5, "EUR", "fr_FR") == "1\u202f234,50\u00a0€"
    assert format_money(1200, "JPY", "ja_JP") == "¥1,200"
    assert format_money(99.99, "GBP", "en_GB") == "£99.99"
    assert format_money(-5, "USD", "en_US") == "-$5"
    assert format_money(10, "XYZ", "en_US") == "XYZ\u00a010"


def test_date_first_name_join_pluralize_filters():
    assert format_date("2026-12-05", "long", "en_US") == "December 5, 2026"
    assert format_date("2026-12-05T10:00:00Z", "long", "en_GB") == "5 December 2026"
    assert format_date("2026-12-05", "short", "de_DE") == "05/12/2026"
    assert format_date("2026-12-05", "%d.%m.%Y") == "05.12.2026"
    with pytest.raises(ValueError, match="not an ISO date"):
        format_date("next tuesday")
    assert first_name("maria jose") == "Maria" and first_name("  McDonald ") == "McDonald"
    assert first_name(None) == "there" and first_name("", "friend") == "friend" and first_name("a" * 64) == "there"
    assert first_name("ANNE") == "Anne"
    assert join_categories(["a", "b", "c", "d"], 3) == "a, b and c"
    assert join_categories(["a"]) == "a" and join_categories([], fallback="x") == "x"
    assert join_categories(["a", "b"], conjunction="or") == "a or b"
    assert pluralize(1, "hire") == "1 hire" and pluralize(3, "hire") == "3 hires"
    assert pluralize(2, "category", "categories") == "2 categories"


def test_filter_errors_are_template_errors_with_line(tmp_path):
    renderer = make_templates(tmp_path, three(text="line\n{{ 'someday'|date }}"))
    with pytest.raises(TemplateError) as caught:
        renderer.render_message("t", None, BASE)
    assert caught.value.line == 2 and "not an ISO date" in str(caught.value)


def test_track_filter_adds_utm_parameters(tmp_path):
    renderer = make_templates(tmp_path, three(text="{{ 'https://x.example/a?b=1&utm_source=old'|track }}"))
    rendered = renderer.render_message("t", "v1", {**BASE, "campaign": "wb"})
    assert rendered.text == "https://x.example/a?b=1&utm_source=email&utm_medium=email&utm_campaign=wb&utm_content=t-v1"


def test_context_is_plain_values_only():
    contact = make_contact(
        "c1", identifiers={IdentifierKind.FIRST_NAME: "b" * 64}, preferred_categories=("design",),
        history={"last_project": "logo", "when": __import__("datetime").date(2026, 1, 2), "obj": object()},
        lifecycle_stage="lapsing", extra={"locale": "fr-FR"},
    )
    context = build_context(contact, campaign="wb", stage="awareness", step=1, unsubscribe_url="https://u.example/t",
                            coupon={"code": "WB-1", "amount": 100, "currency": "USD", "expires_on": None})
    assert context["first_name"] == "" and context["last_name"] == "Lovelace" and context["locale"] == "fr_FR"
    assert context["history"]["when"] == "2026-01-02" and context["history"]["obj"].startswith("<object")
    allowed = (str, int, float, bool, type(None), list, dict)

    def walk(value):
        assert isinstance(value, allowed), type(value)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(context)
    assert plain({"a": [(1, 2)]}) == {"a": [[1, 2]]}
