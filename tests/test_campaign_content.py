"""The owner's content in the sandbox, and the lift arithmetic: no database needed."""

from __future__ import annotations

import pytest

from webapp.campaigns.render import SAMPLE_CONTEXT, CampaignContent, ContentError, with_utm
from webapp.campaigns.results import Group, lift


def content(body: str, body_format: str = "html", **fields) -> CampaignContent:
    values = {
        "name": "Spring yarn",
        "subject": "Hi {{ first_name }}",
        "preheader": "",
        "body": body,
        "body_format": body_format,
        "shop_name": "Wool & Co",
        "postal_address": "1 High Street\nTownsville",
    }
    return CampaignContent(**{**values, **fields})


def error_of(body: str, body_format: str = "html") -> ContentError:
    with pytest.raises(ContentError) as caught:
        content(body, body_format).check(SAMPLE_CONTEXT)
    return caught.value


@pytest.mark.parametrize(
    "body",
    [
        "{{ first_name.__class__.__mro__ }}",
        "{{ recommendations.__class__.__base__.__subclasses__() }}",
        "{{ first_name.format.__globals__ }}",
        "{{ config }}",
        "{{ self.__init__.__globals__ }}",
        "{% include '/etc/passwd' %}",
        "{{ 'x' * 10**10 }}",
        "{{ [1] * 100000 }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(10**9) %}{% endfor %}",
    ],
)
def test_a_template_reaches_nothing_but_its_merge_fields(body):
    assert error_of(body).part == "Body"


def test_errors_name_the_line_the_owner_wrote():
    assert error_of("Hello,\n\n{{ frist_name }}", "markdown").line == 3
    assert error_of("one\ntwo\n{% for %}").line == 3
    bad = error_of("Hi\n{{ 1 / 0 }}")
    assert bad.line == 2 and "ZeroDivisionError" in bad.message


def test_merge_values_are_escaped_and_links_get_utm():
    rendered = content(
        '<a href="https://shop.example/yarn?ref=x">Yarn</a> {{ first_name }}'
    ).render({**SAMPLE_CONTEXT, "first_name": "<script>alert(1)</script>"})
    assert "<script>alert" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert (
        "https://shop.example/yarn?utm_source=patchwork&amp;utm_medium=email"
        "&amp;utm_campaign=Spring+yarn&amp;ref=x" in rendered.html
    )
    assert rendered.subject == "Hi <script>alert(1)</script>"  # plain text: not HTML


def test_existing_utm_parameters_are_kept():
    tagged = with_utm('<a href="https://s.example/?utm_source=ig">x</a>', "Sale")
    assert "utm_source=ig" in tagged and "utm_source=patchwork" not in tagged


def test_every_message_has_the_address_and_the_unsubscribe_link():
    rendered = content("Hello").render(SAMPLE_CONTEXT)
    assert "1 High Street<br>Townsville" in rendered.html
    assert f'href="{SAMPLE_CONTEXT["unsubscribe_url"]}">Unsubscribe' in rendered.html
    assert "Unsubscribe (https://example.com/u/sample)" in rendered.text


def test_a_markdown_list_inside_a_loop_is_one_list():
    body = "Picked for you:\n\n{% for p in recommendations %}\n- {{ p.title }}\n{% endfor %}\n"
    html = content(body, "markdown").render(SAMPLE_CONTEXT).html
    assert html.count("<ul>") == 1 and html.count("<li>") == 2


def test_the_preheader_is_hidden_at_the_top():
    html = content("Body", preheader="Only {{ craft }} today").render(SAMPLE_CONTEXT).html
    assert html.index("Only knitting today") < html.index("Body")
    assert "display:none" in html


def group(size: int, converters: int) -> Group:
    return Group(size=size, converters=converters)


def test_a_clear_lift_has_an_interval_above_zero():
    result = lift(group(2000, 200), group(2000, 100))
    assert result.difference == pytest.approx(0.05)
    # Wald interval: 0.05 +- 1.96 * sqrt(0.1 * 0.9 / 2000 + 0.05 * 0.95 / 2000)
    assert result.low == pytest.approx(0.03375, abs=1e-4)
    assert result.high == pytest.approx(0.06625, abs=1e-4)
    assert result.relative == pytest.approx(1.0)
    assert result.verdict.startswith("The campaign lifted conversion by 5.0 points")


def test_an_interval_across_zero_says_there_is_no_clear_difference():
    result = lift(group(500, 52), group(500, 50))
    assert result.low < 0 < result.high
    assert result.verdict.startswith("No clear difference")


def test_small_groups_are_too_small_to_tell():
    assert lift(group(1000, 90), group(20, 3)).verdict.startswith("Too small to tell")
    assert lift(group(1000, 90), group(500, 2)).verdict.startswith("Too small to tell")
    assert lift(group(1000, 90), group(0, 0)).difference is None
