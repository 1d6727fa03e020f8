"""The embed in a real browser: a shop's page on another origin carries the one script tag.

Patchwork runs as `live_server` on 127.0.0.1; the shop runs on `localhost` at another port (a
different origin and a different site, as in production), serving tests/shop_page/shop.html
with its own, deliberately broad styles. The tag sets data-min-seconds="0" so exit intent
counts at once instead of after the default 3 seconds on the page.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.models import DeclaredTrait, ShopSettings, Survey, SurveyAnswer, SurveyResponse
from webapp.surveys.manage import publish
from webapp.surveys.responses import Identity, sign_identity

ROOT = Path(__file__).resolve().parent.parent
LOADER = ROOT / "static" / "embed.js"
SHOP_PAGE = Path(__file__).parent / "shop_page" / "shop.html"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
MOBILE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}

browser = pytest.mark.browser


def test_the_loader_is_at_most_5_kb_gzipped():
    assert len(gzip.compress(LOADER.read_bytes(), compresslevel=9)) <= 5 * 1024


# --- the shop's site and the shop's settings ---------------------------------------------------


class ShopSite:
    """The shop's own web server: every path answers shop.html with `tag` in it."""

    def __init__(self) -> None:
        self.tag = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = SHOP_PAGE.read_text().replace("{tag}", site.tag).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_port}"

    def url(self, path: str = "/products/merino") -> str:
        return self.origin + path


@pytest.fixture
def shop_site() -> Iterator[ShopSite]:
    site = ShopSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def shop(app, shop_site) -> ShopSettings:
    """The shop's settings: the test shop's origin allowed, no cooldown unless a test sets one."""
    settings = db.session.scalar(select(ShopSettings))
    settings.allowed_origins = shop_site.origin
    settings.survey_cooldown_days = 0
    db.session.commit()
    return settings


def embed_tag(live_server, shop: ShopSettings, **data: str) -> str:
    """The script tag a shop pastes, with data-* attributes (order_id -> data-order-id)."""
    attrs = {"shop-key": shop.embed_key, "min-seconds": "0"}
    attrs.update({name.replace("_", "-"): value for name, value in data.items()})
    rendered = " ".join(f'data-{name}="{html.escape(value)}"' for name, value in attrs.items())
    return f'<script async src="{live_server.url}/embed.js" {rendered}></script>'


def live_survey(template: str, **triggers) -> Survey:
    """A published survey from a stock template, its trigger settings changed by `triggers`."""
    survey = add_survey(template, publish=False)
    definition = dict(survey.definition)
    definition["triggers"] = {**definition.get("triggers", {}), **triggers}
    survey.definition = definition
    publish(survey)
    db.session.commit()
    return survey


def eventually(check: Callable[[], object], timeout: float = 10.0):
    """Poll the database until `check` returns something truthy (the server writes async)."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the expected database state never came")
        time.sleep(0.1)


def responses() -> list[SurveyResponse]:
    db.session.expire_all()
    return list(db.session.scalars(select(SurveyResponse).order_by(SurveyResponse.id)))


# --- the browser -----------------------------------------------------------------------------


class Browsing:
    """Pages in fresh browser contexts; any script error on the shop's page fails the test."""

    def __init__(self, chromium) -> None:
        self.chromium = chromium
        self.contexts = []
        self.errors: list[str] = []

    def page(self, **context_options):
        context = self.chromium.new_context(**context_options)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(chromium) -> Iterator[Browsing]:
    session = Browsing(chromium)
    yield session
    session.close()
    assert session.errors == [], "the shop's page saw script errors"


def survey_dialog(page):
    return page.get_by_role("dialog")


def survey_frame(page):
    return page.frame_locator("patchwork-survey iframe")


def opened_survey(page, expect):
    """Wait for the survey's dialog and its page inside (scripts run); return that frame."""
    expect(survey_dialog(page)).to_be_visible()
    frame = page.locator("patchwork-survey iframe").element_handle().content_frame()
    survey_frame(page).locator("#step").wait_for()
    frame.wait_for_load_state()
    return frame


def loader_settled(page) -> None:
    """Wait until the loader has read its configuration (so a survey could have opened)."""
    page.wait_for_load_state("networkidle")


def leave_through_the_top(page) -> None:
    page.mouse.move(600, 300)
    page.mouse.move(600, 120, steps=4)
    page.mouse.move(600, -20, steps=4)


def active_in_dialog(page) -> str:
    """What has focus, seen from the host page: inside the survey's element, or elsewhere."""
    return page.evaluate(
        """() => {
            const a = document.activeElement;
            if (!a || a.tagName !== 'PATCHWORK-SURVEY') return 'host:' + (a && a.tagName);
            const inner = a.shadowRoot.activeElement;
            return inner ? inner.tagName.toLowerCase() : 'none';
        }"""
    )


def settled_focus(page) -> str:
    """``active_in_dialog`` once focus has come to rest: moving between the survey's frame
    (another process) and the page, it passes through the page's body for a moment."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # it stayed outside: that is the answer
        page.wait_for_function(
            "() => document.activeElement?.tagName === 'PATCHWORK-SURVEY'", timeout=2000
        )
    return active_in_dialog(page)


# --- exit intent -----------------------------------------------------------------------------


@browser
def test_desktop_exit_intent_through_the_top_opens_the_survey(
    live_server, shop_site, shop, browsing, expect
):
    survey = live_survey("exit_intent_objection", kind="exit_intent", device="desktop")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    page.goto(shop_site.url("/products/merino"))
    loader_settled(page)

    # Leaving through the side is not exit intent.
    page.mouse.move(300, 300)
    page.mouse.move(-20, 300, steps=4)
    page.wait_for_timeout(300)
    expect(survey_dialog(page)).to_have_count(0)

    leave_through_the_top(page)
    dialog = survey_dialog(page)
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(survey_frame(page).get_by_text("What stopped you today?")).to_be_visible()

    [response] = eventually(responses)
    assert response.survey_id == survey.id
    assert response.device == "desktop"
    assert response.page_url == shop_site.url("/products/merino")
    assert response.visitor_id and response.customer_id is None


@browser
def test_a_fast_scroll_up_on_a_phone_opens_the_survey(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("exit_intent_objection", kind="exit_intent", device="mobile")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page(**MOBILE)
    page.goto(shop_site.url())
    loader_settled(page)

    scroll_up = """async ([from, step, pause]) => {
        const frame = () => new Promise(r => setTimeout(r, pause));
        for (let y = from; y >= from - 1200 && y >= 0; y -= step) {
            window.scrollTo(0, y);
            await frame();
        }
    }"""
    page.evaluate("window.scrollTo(0, 2500)")
    page.wait_for_timeout(200)
    page.evaluate(scroll_up, [2500, 40, 100])  # reading back up: 0.4 px/ms
    page.wait_for_timeout(200)
    expect(survey_dialog(page)).to_have_count(0)

    page.evaluate("window.scrollTo(0, 2500)")
    page.wait_for_timeout(200)
    page.evaluate(scroll_up, [2500, 250, 16])  # a flick toward the address bar
    expect(survey_dialog(page)).to_be_visible()

    # It fits a 360 px wide screen.
    box = survey_dialog(page).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert box["y"] >= 0 and box["y"] + box["height"] <= 740
    [response] = eventually(responses)
    assert response.device == "mobile"


@browser
def test_coming_back_to_the_tab_on_a_phone_opens_the_survey(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("exit_intent_objection", kind="exit_intent", device="mobile")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page(**MOBILE)
    page.goto(shop_site.url())
    loader_settled(page)

    # Headless Chromium never hides a tab, so the page is told it was, as a tab switch does.
    switch = """state => {
        Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
        Object.defineProperty(document, 'hidden', {value: state === 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    page.evaluate(switch, "hidden")
    page.wait_for_timeout(300)
    expect(survey_dialog(page)).to_have_count(0)  # nothing while the shopper is away
    page.evaluate(switch, "visible")
    expect(survey_dialog(page)).to_be_visible()
    [response] = eventually(responses)
    assert response.device == "mobile"


@browser
def test_desktop_exit_intent_waits_for_the_minimum_time_on_the_page(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("exit_intent_objection", kind="exit_intent")
    shop_site.tag = embed_tag(live_server, shop, min_seconds="30")
    page = browsing.page()
    page.goto(shop_site.url())
    loader_settled(page)
    leave_through_the_top(page)
    page.wait_for_timeout(500)
    expect(survey_dialog(page)).to_have_count(0)
    assert responses() == []


# --- which page, how often -------------------------------------------------------------------


@browser
def test_url_rules_pick_the_pages_a_survey_shows_on(live_server, shop_site, shop, browsing, expect):
    live_survey(
        "heard_from",
        kind="page_load",
        frequency="until_answered",
        url_include=["/products/*"],
        url_exclude=["/PRODUCTS/gift-*/"],
    )
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    for path in ("/", "/checkout", "/products/gift-card", "/products/gift-wrap/"):
        page.goto(shop_site.url(path))
        loader_settled(page)
        expect(survey_dialog(page)).to_have_count(0)
    page.goto(shop_site.url("/products/merino/"))
    expect(survey_dialog(page)).to_be_visible()
    [response] = eventually(responses)
    assert response.page_url == shop_site.url("/products/merino/")


@browser
def test_reloading_honours_the_frequency_cap(live_server, shop_site, shop, browsing, expect):
    once = live_survey("exit_intent_objection", kind="page_load", frequency="once")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    config_requests = []
    page.on("request", lambda r: "config.json" in r.url and config_requests.append(r))
    page.goto(shop_site.url())
    survey_dialog(page).get_by_role("button", name="Close survey").click()
    expect(survey_dialog(page)).to_have_count(0)
    eventually(lambda: responses()[0].dismissed_at)

    page.reload()
    loader_settled(page)
    expect(survey_dialog(page)).to_have_count(0)
    # The browser's cache asked again with the config's ETag (the server answers 304).
    [first, again] = config_requests
    assert again.header_value("if-none-match") == first.response().header_value("etag")

    # "Until answered" comes back after a dismissal; "once" still does not.
    once.status = "paused"
    db.session.commit()
    again = live_survey("heard_from", kind="page_load", frequency="until_answered")
    for _ in range(2):
        page.reload()
        opened_survey(page, expect)
        page.keyboard.press("Escape")
        expect(survey_dialog(page)).to_have_count(0)
    shown = eventually(lambda: len(r := responses()) == 3 and all(x.dismissed_at for x in r))
    assert shown
    assert [r.survey_id for r in responses()] == [once.id, again.id, again.id]


@browser
def test_the_shop_wide_cooldown_keeps_a_second_survey_away(
    live_server, shop_site, shop, browsing, expect
):
    shop.survey_cooldown_days = 7
    db.session.commit()
    first = live_survey("exit_intent_objection", kind="page_load")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    page.goto(shop_site.url())
    opened_survey(page, expect)
    page.keyboard.press("Escape")
    expect(survey_dialog(page)).to_have_count(0)

    first.status = "paused"
    db.session.commit()
    live_survey("heard_from", kind="page_load")
    page.reload()
    loader_settled(page)
    expect(survey_dialog(page)).to_have_count(0)
    assert [r.survey_id for r in responses()] == [first.id]


@browser
def test_a_site_not_allowed_gets_no_survey_and_no_error(
    live_server, shop_site, shop, browsing, expect
):
    shop.allowed_origins = "https://another-shop.example"
    db.session.commit()
    live_survey("exit_intent_objection", kind="page_load")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    page.goto(shop_site.url())
    loader_settled(page)
    expect(survey_dialog(page)).to_have_count(0)
    assert responses() == []


@browser
def test_without_local_storage_the_survey_still_works(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("exit_intent_objection", kind="page_load")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    # What a private window or blocked site data does: touching localStorage throws.
    page.add_init_script(
        """Object.defineProperty(window, 'localStorage', {
            get() { throw new DOMException('The operation is insecure.', 'SecurityError'); }
        });"""
    )
    page.goto(shop_site.url())
    expect(survey_dialog(page)).to_be_visible()
    assert eventually(responses)


# --- the dialog ------------------------------------------------------------------------------


@browser
def test_focus_moves_in_stays_in_and_comes_back(live_server, shop_site, shop, browsing, expect):
    live_survey("exit_intent_objection", kind="exit_intent")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    page.goto(shop_site.url())
    loader_settled(page)
    page.focus("#search")
    leave_through_the_top(page)
    opened_survey(page, expect)
    dialog = survey_dialog(page)
    expect(dialog).to_have_accessible_name("Before you go")
    assert active_in_dialog(page) == "iframe"

    # Tab and Shift+Tab cycle between the close button and the survey, never the shop's page.
    seen = set()
    for key in ["Tab"] * 12 + ["Shift+Tab"] * 12:
        page.keyboard.press(key)
        seen.add(settled_focus(page))
    assert seen == {"button", "iframe"}

    # Only the survey's own frame, from Patchwork's origin, may close or resize it.
    page.evaluate("window.postMessage({patchwork: 'close'}, '*')")
    survey_frame(page).locator("body").evaluate(
        "() => parent.postMessage({patchwork: 'height', value: 222}, '*')"
    )
    expect(page.locator("patchwork-survey iframe")).to_have_css("height", "222px")
    expect(dialog).to_be_visible()

    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == "search"
    assert eventually(lambda: responses()[0].dismissed_at)


@browser
def test_the_shop_page_keeps_its_styles(live_server, shop_site, shop, browsing, expect):
    live_survey("exit_intent_objection", kind="page_load")
    snapshot = """() => ({
        styles: Array.from(document.querySelectorAll('*'))
            .filter(e => !['SCRIPT', 'PATCHWORK-SURVEY'].includes(e.tagName))
            .map(e => {
                const cs = getComputedStyle(e);
                const all = Array.from(cs).map(p => p + ':' + cs.getPropertyValue(p));
                return e.tagName + ' ' + all.join(';');
            }),
        sheets: document.styleSheets.length,
        adopted: document.adoptedStyleSheets.length,
        head: document.head.innerHTML,
        globals: Object.keys(window),
    })"""
    page = browsing.page()
    page.goto(shop_site.url())
    loader_settled(page)
    before = page.evaluate(snapshot)

    shop_site.tag = embed_tag(live_server, shop)
    page.goto(shop_site.url())
    expect(survey_dialog(page)).to_be_visible()
    after = page.evaluate(snapshot)

    assert after["styles"] == before["styles"]
    assert (after["sheets"], after["adopted"], after["head"]) == (
        before["sheets"],
        before["adopted"],
        before["head"],
    )
    assert set(after["globals"]) - set(before["globals"]) == {"PatchworkEmbed"}
    # The shop's broad rules (iframe, [role=dialog]) do not reach into the survey either.
    expect(page.locator("patchwork-survey iframe")).to_have_css("border-top-width", "0px")


# --- answering -------------------------------------------------------------------------------


def focused_in_survey(frame) -> str:
    """The label (or text) of what has focus inside the survey's page."""
    return frame.evaluate(
        """() => {
            const a = document.activeElement;
            const label = a.closest('label');
            return (label ? label.textContent : a.textContent).trim();
        }"""
    )


def tab_to(page, frame, text: str) -> None:
    for _ in range(30):
        if focused_in_survey(frame) == text:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {text!r}")


def next_step(page, frame, button: str, prompt: str, expect) -> None:
    tab_to(page, frame, button)
    page.keyboard.press("Enter")
    expect(frame.get_by_text(prompt)).to_be_visible()


@browser
def test_a_signed_order_page_answered_with_the_keyboard_alone(
    live_server, shop_site, shop, browsing, expect
):
    survey = live_survey("post_purchase_profile", kind="post_purchase", frequency="once")
    customer = add_customer("Ada", "Lovelace", "ada@example.com")
    order = add_order(customer, "#1001", 4500)
    identity = Identity(order_ref="#1001", email="ada@example.com")
    shop_site.tag = embed_tag(
        live_server,
        shop,
        order_id="#1001",
        email="ada@example.com",
        signature=sign_identity(shop.embed_secret, identity),
    )
    page = browsing.page()
    page.goto(shop_site.url("/checkouts/thank-you"))
    frame = opened_survey(page, expect)
    assert active_in_dialog(page) == "iframe"

    tab_to(page, frame, "Knitting")
    page.keyboard.press("Space")
    tab_to(page, frame, "Crochet")
    page.keyboard.press("Space")
    next_step(page, frame, "Next", "How would you describe your skill?", expect)
    assert focused_in_survey(frame) == "Beginner"  # the new step has focus
    page.keyboard.press("ArrowDown")  # radios: the arrow keys move and choose
    next_step(page, frame, "Next", "Is this a gift or for you?", expect)
    page.keyboard.press("Space")
    next_step(page, frame, "Next", "How did you hear about us?", expect)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to(page, frame, "Send")
    page.keyboard.press("Enter")
    expect(frame.locator("[data-completed]")).to_be_visible()

    response = eventually(lambda: (r := responses()) and r[0].completed_at and r[0])
    assert response.survey_id == survey.id and response.identity_verified
    assert (response.order_id, response.customer_id) == (order.id, customer.id)
    answers = {
        a.question_id: a.value
        for a in db.session.scalars(
            select(SurveyAnswer).where(SurveyAnswer.response_id == response.id)
        )
    }
    assert set(answers) == {"craft", "skill", "occasion", "heard_from"}
    traits = set(
        db.session.execute(
            select(DeclaredTrait.dimension, DeclaredTrait.value).where(
                DeclaredTrait.response_id == response.id
            )
        )
    )
    assert traits == {
        ("craft", "knitting"),
        ("craft", "crochet"),
        ("skill", "intermediate"),
        ("occasion", "gift"),
        ("heard_from", "pinterest"),
    }

    # Esc inside the survey closes it; answered, it is not counted as dismissed.
    page.keyboard.press("Escape")
    expect(survey_dialog(page)).to_have_count(0)
    assert responses()[0].dismissed_at is None

    page.reload()  # "once", and answered: never again
    loader_settled(page)
    expect(survey_dialog(page)).to_have_count(0)
    assert len(responses()) == 1


@browser
def test_an_unsigned_order_id_is_kept_as_a_claim_not_linked(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("occasion", kind="post_purchase")
    customer = add_customer("Ada", "Lovelace", "ada@example.com")
    add_order(customer, "#1001", 4500)
    shop_site.tag = embed_tag(live_server, shop, order_id="#1001")
    page = browsing.page()
    page.goto(shop_site.url("/checkouts/thank-you"))
    frame = opened_survey(page, expect)
    tab_to(page, frame, "A gift")
    page.keyboard.press("ArrowDown")  # "For me"
    tab_to(page, frame, "Send")
    page.keyboard.press("Enter")
    expect(frame.locator("[data-completed]")).to_be_visible()

    response = eventually(lambda: (r := responses()) and r[0].completed_at and r[0])
    assert response.order_ref == "#1001" and not response.identity_verified
    assert (response.order_id, response.customer_id) == (None, None)


@browser
def test_no_serious_accessibility_problems_in_the_survey(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("post_purchase_profile", kind="page_load")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page(bypass_csp=True)
    page.goto(shop_site.url())
    frame = opened_survey(page, expect)
    axe = AXE.read_text()

    def serious(target, context) -> list[str]:
        target.evaluate(axe)
        result = target.evaluate("context => axe.run(context)", context)
        return [
            f"{v['id']} ({v['impact']}): {v['help']}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    assert serious(frame, "html") == []  # the survey's first step
    tab_to(page, frame, "Knitting")
    page.keyboard.press("Space")
    next_step(page, frame, "Next", "How would you describe your skill?", expect)
    assert serious(frame, "html") == []  # an htmx-swapped step
    assert serious(page, {"include": [["patchwork-survey"]]}) == []  # the dialog around it


@browser
def test_a_survey_outside_its_sample_or_device_never_shows(
    live_server, shop_site, shop, browsing, expect
):
    live_survey("heard_from", kind="page_load", sample_percent=0)
    live_survey("occasion", kind="page_load", device="desktop")
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page(**MOBILE)
    page.goto(shop_site.url())
    loader_settled(page)
    page.wait_for_timeout(300)
    expect(survey_dialog(page)).to_have_count(0)
    assert responses() == []


@browser
def test_an_after_seconds_survey_waits_its_delay(live_server, shop_site, shop, browsing, expect):
    live_survey("heard_from", kind="after_seconds", delay_seconds=2)
    shop_site.tag = embed_tag(live_server, shop)
    page = browsing.page()
    page.goto(shop_site.url())
    loader_settled(page)
    expect(survey_dialog(page)).to_have_count(0)
    expect(survey_dialog(page)).to_be_visible(timeout=5_000)
