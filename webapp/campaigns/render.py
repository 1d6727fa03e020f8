"""The owner's content, rendered per recipient in a sandboxed Jinja environment.

A template reaches only the merge fields handed to it (plain strings, lists and dicts) and
Jinja's harmless defaults (range, loop helpers): the immutable sandbox refuses attribute
tricks, and there is no file loader and no config. Unknown names are errors
(StrictUndefined), so a typo shows in the editor, with its line, when the campaign is saved
or previewed; the content is also tried for a recipient of whom nothing is known. A
recipient whose own fields still break it fails alone, with the error, at send time.

Markdown is turned into HTML once per send, with the Jinja tags kept aside, so each recipient
costs one template render. Literal links get the UTM parameters once, in the source.
"""

from __future__ import annotations

import html
import re
import traceback
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import markdown as markdown_lib
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MERGE_FIELDS = {
    "first_name": "The customer's first name (may be empty: {{ first_name or 'there' }})",
    "shop_name": "Your shop's name",
    "last_product": "The product they bought last",
    "craft": "Their preferred craft (knitting, painting, ...; empty when unknown or mixed)",
    "skill": "Their skill (beginner, intermediate, experienced; empty when unknown)",
    "recommendations": "Up to three products in their craft they have not bought, best "
    "sellers first: {% for p in recommendations %}{{ p.title }} ({{ p.price }}){% endfor %}",
    "restock": "The product they buy most, for a restock reminder (empty if none)",
    "discount_code": "The campaign's discount code",
    "unsubscribe_url": "Their one-click unsubscribe link",
    "postal_address": "Your shop's postal address (every footer carries it already)",
    "preferences_url": "Their email preferences page",
}

SAMPLE_CONTEXT = {
    "first_name": "Ada",
    "shop_name": "Your shop",
    "last_product": "Merino DK, Heather",
    "craft": "knitting",
    "skill": "beginner",
    "recommendations": [
        {"title": "Bamboo needles 4 mm", "price": "$9.00", "sku": "NEEDLE-4"},
        {"title": "Alpaca lace, Moss", "price": "$14.50", "sku": "ALP-MOSS"},
    ],
    "restock": "Merino DK, Heather",
    "discount_code": "WELCOME10",
    "unsubscribe_url": "https://example.com/u/sample",
    "preferences_url": "https://example.com/p/sample",
    "postal_address": "1 Mill Street, Burlington",
}
# A recipient with nothing known: a template must render for them too.
EMPTY_CONTEXT = {
    **SAMPLE_CONTEXT,
    **{key: "" for key in ("first_name", "last_product", "craft", "skill", "restock")},
    "recommendations": [],
}

MAX_REPEAT = 10_000  # "ab" * n, [x] * n
MAX_EXPONENT = 100


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, also refusing the arithmetic that would stall a worker
    ("x" * 10**10): the preview renders inside a web request."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent above {MAX_EXPONENT} is not allowed")
        if operator == "*":
            for value, times in ((left, right), (right, left)):
                repeated = isinstance(value, str | list | tuple) and isinstance(times, int)
                if repeated and times > MAX_REPEAT:
                    raise SecurityError(f"repeating more than {MAX_REPEAT} times")
        return super().call_binop(context, operator, left, right)


_env = Sandbox(undefined=StrictUndefined, autoescape=True)
_text_env = Sandbox(undefined=StrictUndefined, autoescape=False)

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_BLOCK_TAG_LINE = re.compile(r"\{%.*?%\}")
_PLACEHOLDER = "PWJINJA{}X"
_HREF = re.compile(r'(href=")(https?://[^"{}]+)(")', re.I)
_TAG = re.compile(r"<[^>]+>")
_SPLIT_LIST = re.compile(r"</(ul|ol)>\s*<\1>")
_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|tr|table|ul|ol)>|<br\s*/?>", re.I)


class ContentError(ValueError):
    """The owner's content does not render: which part, which line, what is wrong."""

    def __init__(self, part: str, message: str, line: int | None = None):
        self.part, self.message, self.line = part, message, line
        where = f" (line {line})" if line else ""
        super().__init__(f"{part}{where}: {message}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def markdown_to_template(source: str) -> str:
    """Markdown to HTML, the Jinja tags left exactly as written."""
    tags: list[str] = []

    def keep(match: re.Match) -> str:
        tags.append(match.group(0))
        return _PLACEHOLDER.format(len(tags) - 1)

    lines = []
    for line in source.splitlines():
        kept = _JINJA_TAG.sub(keep, line)
        # A block tag alone on its line stands apart, so the Markdown around it (a list
        # inside a loop) reads as if the tag were not there.
        lines.extend(["", kept, ""] if _BLOCK_TAG_LINE.fullmatch(line.strip()) else [kept])
    converted = markdown_lib.markdown("\n".join(lines), extensions=["sane_lists"])
    for index, tag in enumerate(tags):
        placeholder = _PLACEHOLDER.format(index)
        if tag.startswith("{%"):  # a block tag alone on its line: no empty paragraph around
            converted = converted.replace(f"<p>{placeholder}</p>", tag)
        converted = converted.replace(placeholder, tag)
    return converted


def with_utm(source_html: str, campaign_name: str) -> str:
    """Literal http(s) links get utm_source/medium/campaign (existing ones are kept)."""
    utm = {"utm_source": "patchwork", "utm_medium": "email", "utm_campaign": campaign_name}

    def tag(match: re.Match) -> str:
        url = html.unescape(match.group(2))
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query = {**{k: v for k, v in utm.items() if k not in query}, **query}
        tagged = urlunsplit(parts._replace(query=urlencode(query)))
        return match.group(1) + html.escape(tagged) + match.group(3)

    return _HREF.sub(tag, source_html)


def html_to_text(markup: str) -> str:
    """A plain-text part from the HTML: blocks become lines, links keep their address."""
    markup = re.sub(
        r'<a\s[^>]*href="([^"]+)"[^>]*>(.*?)</a>',
        lambda m: f"{m.group(2)} ({m.group(1)})",
        markup,
        flags=re.I | re.S,
    )
    text = html.unescape(_TAG.sub("", _BLOCK_END.sub("\n", markup)))
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _compile(environment, source: str, part: str) -> Template:
    try:
        return environment.from_string(source)
    except TemplateSyntaxError as exc:
        raise ContentError(part, exc.message or str(exc), exc.lineno) from None


def _run(template: Template, context: dict, part: str) -> str:
    try:
        return template.render(context)
    except TemplateError as exc:
        raise ContentError(part, str(exc), _template_line(exc)) from None
    except Exception as exc:  # a sandboxed expression gone wrong (1/0, "a" + 1, ...)
        raise ContentError(part, f"{type(exc).__name__}: {exc}", _template_line(exc)) from None


def _template_line(exc: BaseException) -> int | None:
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [frame.lineno for frame in frames if frame.filename == "<template>"]
    return lines[-1] if lines else None


class CampaignContent:
    """A campaign's subject, preheader and body, compiled once, rendered per recipient."""

    def __init__(
        self,
        *,
        name: str,
        subject: str,
        preheader: str,
        body: str,
        body_format: str,
        shop_name: str,
        postal_address: str,
    ):
        self.subject = _compile(_text_env, subject, "Subject")
        self.preheader = _compile(_env, preheader, "Preheader")
        # The body as the owner wrote it: its errors name the lines they typed (Markdown's
        # HTML has other line numbers).
        self.written = _compile(_env, body, "Body")
        source = markdown_to_template(body) if body_format == "markdown" else body
        self.body = _compile(_env, with_utm(source, name), "Body")
        lines = [line.strip() for line in postal_address.splitlines() if line.strip()]
        if not lines or lines[0] != shop_name.strip():  # an address may start with the name
            lines.insert(0, shop_name)
        # Split around the links, which differ per recipient (no str.format: an address
        # may hold braces).
        self.footer = (
            '<hr><p style="font-size:12px;color:#666">'
            + "<br>".join(html.escape(line) for line in lines)
            + '<br><a href="',
            '">Unsubscribe</a> · <a href="',
            '">Email preferences</a></p>',
        )
        self.markdown = body_format == "markdown"

    @classmethod
    def of(cls, campaign, shop) -> CampaignContent:
        return cls(  # a draft from the editor may leave fields None
            name=campaign.name or "",
            subject=campaign.subject or "",
            preheader=campaign.preheader or "",
            body=campaign.body or "",
            body_format=campaign.body_format or "markdown",
            shop_name=shop.name,
            postal_address=shop.postal_address,
        )

    def render(self, context: dict) -> Rendered:
        subject = _run(self.subject, context, "Subject").strip()
        preheader = _run(self.preheader, context, "Preheader").strip()
        body = _run(self.body, context, "Body")
        if self.markdown:  # a list written inside a loop: one list, not one per item
            body = _SPLIT_LIST.sub("", body)
        start, middle, end = self.footer
        footer = (
            start
            + html.escape(context["unsubscribe_url"])
            + middle
            + html.escape(context["preferences_url"])
            + end
        )
        hidden = (
            f'<div style="display:none;max-height:0;overflow:hidden">{preheader}</div>'
            if preheader
            else ""
        )
        markup = f"<!doctype html><html><body>{hidden}{body}{footer}</body></html>"
        return Rendered(subject=subject, html=markup, text=html_to_text(body + footer))

    def check(self, context: dict) -> None:
        """Raise the first ContentError rendering ``context`` (and a recipient of whom
        nothing is known) meets, at the line written."""
        for fields in (context, {**EMPTY_CONTEXT, "shop_name": context["shop_name"]}):
            _run(self.written, fields, "Body")
            self.render(fields)


def check(campaign, shop) -> list[ContentError]:
    """Every error the campaign's content has, found by compiling and rendering it with
    sample merge fields; an empty list when it will render for every recipient."""
    try:
        if campaign.uses_template:
            return []
        CampaignContent.of(campaign, shop).check({**SAMPLE_CONTEXT, "shop_name": shop.name})
    except ContentError as exc:
        return [exc]
    return []
