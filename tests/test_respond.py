"""The shopper's survey pages: the iframe's steps, the hosted link, the owner's preview."""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.models import Customer, Survey, SurveyAnswer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys.manage import pause, unique_slug
from webapp.surveys.manage import publish as publish_survey
from webapp.surveys.responses import Identity, sign_identity, start_response
from webapp.surveys.tokens import response_token

SHOP_ORIGIN = "https://shop.example"
HTMX = {"HX-Request": "true"}

EVERY_TYPE = {
    "title": "Everything",
    "thank_you": "Thanks a bunch!",
    "questions": [
        {
            "id": "colour",
            "type": "single_choice",
            "prompt": "Favourite colour?",
            "options": [
                {"id": "red", "label": "Red"},
                {"id": "blue", "label": "Blue", "jump": "nps"},
            ],
            "allow_other": True,
        },
        {
            "id": "crafts",
            "type": "multiple_choice",
            "prompt": "What do you make?",
            "options": [{"id": "knit", "label": "Knitting"}, {"id": "sew", "label": "Sewing"}],
        },
        {
            "id": "rating",
            "type": "rating",
            "prompt": "How was it?",
            "low_label": "Poor",
            "high_label": "Great",
        },
        {"id": "nps", "type": "nps", "prompt": "Would you recommend us?"},
        {"id": "note", "type": "short_text", "prompt": "Anything else?", "required": False},
        {"id": "email", "type": "email", "prompt": "Want our news?", "required": False},
    ],
}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def add_custom_survey(definition: dict, publish: bool = True) -> Survey:
    survey = Survey(slug=unique_slug(db.session, definition["title"]), definition=definition)
    db.session.add(survey)
    db.session.flush()
    if publish:
        publish_survey(survey)
    db.session.commit()
    return survey


def shown(survey: Survey, **fields) -> str:
    """The survey shown on the shop's page: the iframe's address."""
    response = start_response(db.session, survey, get_shop(), visitor_id="v-1", **fields)
    db.session.commit()
    return f"/r/{response_token(response.public_id)}"


def html(response) -> str:
    return response.get_data(as_text=True)


def stored(question_id: str):
    return db.session.scalar(
        select(SurveyAnswer.value).where(SurveyAnswer.question_id == question_id)
    )


@pytest.fixture
def everything(app):
    shop = get_shop()
    shop.allowed_origins = SHOP_ORIGIN
    db.session.commit()
    return add_custom_survey(EVERY_TYPE)


# --- every question type -------------------------------------------------------------------


def test_choice_questions_are_real_radios_and_checkboxes_in_a_fieldset(client, everything):
    url = shown(everything)
    page = html(client.get(url))
    assert "<fieldset" in page and "<legend" in page and "Favourite colour?" in page
    assert page.count('type="radio"') == 3  # red, blue and "Other"
    assert 'name="other"' in page and "Question 1 of 6" in page
    client.post(url, data={"question": "colour", "answer": "red"})
    page = html(client.get(url))
    assert page.count('type="checkbox"') == 2 and "Choose all that apply." in page


def test_scales_text_and_email_render_as_their_fields(owner_client, everything):
    def step(question_id):
        return html(owner_client.get(f"/surveys/{everything.id}/preview?step={question_id}"))

    rating = step("rating")
    assert re.findall(r'type="radio" value="(\d+)"', rating) == [str(n) for n in range(1, 6)]
    assert "Poor" in rating and "Great" in rating
    nps = step("nps")
    assert re.findall(r'type="radio" value="(\d+)"', nps) == [str(n) for n in range(11)]
    note = step("note")
    assert "<textarea" in note and 'maxlength="200"' in note and "(optional)" in note
    email = step("email")
    assert 'type="email"' in email
    consent = re.search(r"<input[^>]*name=\"consent\"[^>]*>", email).group(0)
    assert 'type="checkbox"' in consent and "checked" not in consent


# --- steps ---------------------------------------------------------------------------------


def test_each_step_is_saved_at_once_and_leads_to_the_next(client, everything):
    url = shown(everything)
    response = client.post(url, data={"question": "colour", "answer": "red"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("?step=crafts")
    assert stored("colour") == {"options": ["red"], "other": None}
    row = db.session.scalar(select(SurveyResponse))
    assert row.started_at is not None and row.next_question == "crafts"
    assert "Question 2 of 6" in html(client.get(response.headers["Location"]))


def test_a_jump_skips_to_its_question(client, everything):
    url = shown(everything)
    response = client.post(url, data={"question": "colour", "answer": "blue"})
    assert response.headers["Location"].endswith("?step=nps")


def test_the_whole_survey_over_htmx_ends_with_the_thank_you(client, everything):
    url = shown(everything)
    steps = [
        {"question": "colour", "answer": "other", "other": "Teal"},
        {"question": "crafts", "answer": ["knit", "sew"]},
        {"question": "rating", "answer": "4"},
        {"question": "nps", "answer": "10"},
        {"question": "note", "answer": ""},
        {"question": "email", "email": "ada@example.com", "consent": "y"},
    ]
    pages = [client.post(url, data=data, headers=HTMX) for data in steps]
    assert [p.status_code for p in pages] == [200] * 6
    assert all("<html" not in html(p) for p in pages)  # htmx gets the step alone
    assert "Question 3 of 6" in html(pages[1])
    last = html(pages[-1])
    assert "Thanks a bunch!" in last and "data-completed" in last
    row = db.session.scalar(select(SurveyResponse))
    assert row.completed_at is not None
    assert stored("crafts") == {"options": ["knit", "sew"], "other": None}
    assert stored("nps") == {"number": 10} and stored("note") is None
    ada = db.session.scalar(select(Customer).where(Customer.email_norm == "ada@example.com"))
    assert ada.accepts_marketing and row.customer_id == ada.id
    assert "Thanks a bunch!" in html(client.get(url))  # coming back shows the thank-you


def test_an_email_without_the_box_ticked_gives_no_consent(client, everything):
    url = shown(everything)
    for data in (
        {"question": "colour", "answer": "blue"},
        {"question": "nps", "answer": "3"},
        {"question": "note", "answer": "x"},
        {"question": "email", "email": "bo@example.com"},
    ):
        assert client.post(url, data=data).status_code == 303
    assert stored("email") == {"email": "bo@example.com", "consent": False}
    assert count(Customer) == 0


def test_back_shows_the_earlier_answer_and_a_change_replaces_it(client, everything):
    url = shown(everything)
    client.post(url, data={"question": "colour", "answer": "other", "other": "<b>Teal</b>"})
    page = html(client.get(url))
    back = re.search(r'<form id="back-form"[^>]*>\s*<input[^>]*value="(\w+)"', page)
    assert back.group(1) == "colour"
    earlier = html(client.get(url + "?step=colour"))
    assert re.search(r'checked[^>]*value="other"|value="other"[^>]*checked', earlier)
    assert "&lt;b&gt;Teal&lt;/b&gt;" in earlier and "<b>Teal" not in earlier
    client.post(url, data={"question": "colour", "answer": "red"})
    assert stored("colour") == {"options": ["red"], "other": None}
    assert count(SurveyAnswer) == 1


def test_a_later_step_cannot_be_opened_before_its_turn(client, everything):
    url = shown(everything)
    assert "Question 1 of 6" in html(client.get(url + "?step=email"))


def test_an_invalid_answer_shows_its_reason_beside_the_field_and_stores_nothing(client, everything):
    url = shown(everything)
    response = client.post(url, data={"question": "colour"}, headers=HTMX)
    assert response.status_code == 422
    page = html(response)
    assert '<p id="answer-error" class="error">Please answer this question.</p>' in page
    assert re.search(r'aria-describedby="answer-error"[^>]*aria-invalid="true"', page)
    other = client.post(url, data={"question": "colour", "answer": "other"})
    assert other.status_code == 422
    assert re.search(r'id="other-error" class="error">Tell us what', html(other))
    assert count(SurveyAnswer) == 0
    assert db.session.scalar(select(SurveyResponse.started_at)) is None


def test_an_invalid_email_is_kept_in_the_field_escaped(client, everything):
    url = shown(everything)
    for data in (
        {"question": "colour", "answer": "blue"},
        {"question": "nps", "answer": "3"},
        {"question": "note", "answer": ""},
    ):
        client.post(url, data=data)
    response = client.post(url, data={"question": "email", "email": '"><script>x</script>'})
    assert response.status_code == 422
    page = html(response)
    assert 'id="email-error"' in page and "<script>x" not in page
    assert "&#34;&gt;&lt;script&gt;" in page or "&quot;&gt;&lt;script&gt;" in page


def test_a_stale_page_answering_out_of_turn_shows_the_current_step(client, everything):
    url = shown(everything)
    response = client.post(url, data={"question": "nps", "answer": "3"})
    assert response.status_code == 409
    assert "Answer the questions in order." in html(response)
    assert "Question 1 of 6" in html(response)
    assert count(SurveyAnswer) == 0


def test_a_response_whose_question_was_republished_away_is_closed(client, everything):
    url = shown(everything)
    client.post(url, data={"question": "colour", "answer": "red"})
    everything.definition = {**EVERY_TYPE, "questions": EVERY_TYPE["questions"][2:]}
    publish_survey(everything)
    db.session.commit()
    response = client.get(url)
    assert response.status_code == 410 and "has changed" in html(response)


def test_an_unknown_question_is_a_400(client, everything):
    response = client.post(shown(everything), data={"question": "nope", "answer": "x"})
    assert response.status_code == 400
    assert count(SurveyAnswer) == 0


def test_a_forged_token_opens_nothing(client, everything):
    url = shown(everything)
    for bad in (url[:-3] + "abc", "/r/whatever"):
        assert client.get(bad).status_code == 403
        assert client.post(bad, data={"question": "colour", "answer": "red"}).status_code == 403
    assert count(SurveyAnswer) == 0


def test_a_body_over_the_limit_is_refused(app, client, everything):
    padding = "x" * app.config["SURVEY_MAX_BODY_BYTES"]
    response = client.post(shown(everything), data={"question": "note", "answer": padding})
    assert response.status_code == 413
    assert count(SurveyAnswer) == 0


def test_only_the_shops_origins_may_frame_the_survey(client, everything):
    response = client.get(shown(everything))
    policy = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {SHOP_ORIGIN}" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    hosted = client.get(f"/s/{everything.slug}")
    assert "frame-ancestors 'self'" in hosted.headers["Content-Security-Policy"]
    assert SHOP_ORIGIN not in hosted.headers["Content-Security-Policy"]


def test_the_iframe_page_leaves_closing_to_the_loaders_dialog(client, everything):
    # One close button: the dialog's, which works even when the iframe fails to load.
    assert "Close the survey" not in html(client.get(shown(everything)))


# --- the hosted link -------------------------------------------------------------------------


def test_opening_the_hosted_link_records_nothing(client, everything):
    response = client.get(f"/s/{everything.slug}?order_id=1001&utm_source=mail")
    assert response.status_code == 200
    page = html(response)
    assert "Favourite colour?" in page
    assert f'action="/s/{everything.slug}?order_id=1001&amp;utm_source=mail"' in page
    assert client.head(f"/s/{everything.slug}").status_code == 200
    assert count(SurveyResponse) == 0


def test_the_first_answer_on_the_hosted_link_creates_the_response(client, everything):
    response = client.post(f"/s/{everything.slug}", data={"question": "colour", "answer": "red"})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert re.fullmatch(r"/r/[\w.-]+\?step=crafts", location)
    row = db.session.scalar(select(SurveyResponse))
    assert row.channel == "link" and stored("colour") == {"options": ["red"], "other": None}
    page = html(client.get(location))
    assert "Question 2 of 6" in page and "data-close" not in page


def test_the_hosted_link_over_htmx_continues_at_the_responses_address(client, everything):
    response = client.post(
        f"/s/{everything.slug}", data={"question": "colour", "answer": "red"}, headers=HTMX
    )
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"].startswith("/r/")
    assert f'hx-post="{response.headers["HX-Push-Url"]}"' in html(response)


def test_an_invalid_first_answer_on_the_hosted_link_stores_nothing(client, everything):
    response = client.post(f"/s/{everything.slug}", data={"question": "colour"})
    assert response.status_code == 422
    assert "Please answer this question." in html(response)
    assert count(SurveyResponse) == 0
    later = client.post(f"/s/{everything.slug}", data={"question": "nps", "answer": "3"})
    assert later.status_code == 400
    assert count(SurveyResponse) == 0


def test_a_signed_hosted_link_links_the_answer_to_the_customer_and_order(client, everything):
    ada = add_customer("Ada", email="ada@example.com")
    order = add_order(ada, "#1001", 4200)
    identity = Identity(order_ref="#1001", email="ada@example.com")
    signature = sign_identity(get_shop().embed_secret, identity)
    query = f"order_id=%231001&email=ada@example.com&signature={signature}"
    client.post(f"/s/{everything.slug}?{query}", data={"question": "colour", "answer": "red"})
    row = db.session.scalar(select(SurveyResponse))
    assert (row.customer_id, row.order_id, row.identity_verified) == (ada.id, order.id, True)


def test_an_unsigned_hosted_link_keeps_only_a_claim(client, everything):
    add_customer("Ada", email="ada@example.com")
    client.post(
        f"/s/{everything.slug}?email=ada@example.com&signature={'0' * 64}",
        data={"question": "colour", "answer": "red"},
    )
    row = db.session.scalar(select(SurveyResponse))
    assert (row.customer_id, row.claimed_email) == (None, "ada@example.com")


def test_a_malformed_signature_on_the_hosted_link_is_a_400(client, everything):
    response = client.post(
        f"/s/{everything.slug}?signature=nothex", data={"question": "colour", "answer": "red"}
    )
    assert response.status_code == 400
    assert count(SurveyResponse) == 0


def test_a_paused_draft_or_unknown_survey_is_closed(client, everything):
    draft = add_custom_survey({**EVERY_TYPE, "title": "Draft"}, publish=False)
    assert client.get(f"/s/{draft.slug}").status_code == 404
    assert client.get("/s/no-such-survey").status_code == 404
    pause(everything)
    db.session.commit()
    closed = client.get(f"/s/{everything.slug}")
    assert closed.status_code == 410 and "This survey is closed" in html(closed)
    posted = client.post(f"/s/{everything.slug}", data={"question": "colour", "answer": "red"})
    assert posted.status_code == 410
    assert count(SurveyResponse) == 0


# --- the owner's preview -------------------------------------------------------------------


def test_the_preview_is_for_the_owner_only(client, everything):
    response = client.get(f"/surveys/{everything.id}/preview")
    assert (
        response.status_code == 302
        and "/login" in response.headers["Location"]
        or ("/setup" in response.headers["Location"])
    )


def test_the_preview_shows_the_draft_and_stores_nothing(owner_client, everything):
    draft = dict(everything.definition)
    draft["questions"] = [{**draft["questions"][0], "prompt": "Which colour, really?"}]
    draft["questions"][0]["options"] = [
        {**o, "jump": None} for o in draft["questions"][0]["options"]
    ]
    everything.definition = draft
    db.session.commit()
    page = html(owner_client.get(f"/surveys/{everything.id}/preview"))
    assert "Which colour, really?" in page and "not saved" in page
    assert "Favourite colour?" in html(owner_client.get(f"/s/{everything.slug}"))
    done = owner_client.get(f"/surveys/{everything.id}/preview?question=colour&answer=red")
    assert "Thanks a bunch!" in html(done)
    assert count(SurveyResponse) == 0 and count(SurveyAnswer) == 0


def test_the_preview_walks_the_steps_and_checks_answers(owner_client):
    survey = add_custom_survey(EVERY_TYPE, publish=False)
    base = f"/surveys/{survey.id}/preview"
    jumped = html(owner_client.get(f"{base}?step=colour&question=colour&answer=blue"))
    assert "Would you recommend us?" in jumped
    wrong = owner_client.get(f"{base}?question=nps&answer=11")
    assert wrong.status_code == 422 and "from 0 to 10" in html(wrong)
    assert "What do you make?" in html(owner_client.get(f"{base}?step=crafts"))
    assert count(SurveyResponse) == 0


def test_the_preview_of_an_invalid_draft_lists_its_problems(owner_client, everything):
    everything.definition = {**everything.definition, "questions": []}
    db.session.commit()
    page = html(owner_client.get(f"/surveys/{everything.id}/preview"))
    assert "Add at least one question." in page


def test_the_stock_templates_render_every_step(client):
    survey = add_survey("post_purchase_profile")
    url = shown(survey)
    assert "What are you making?" in html(client.get(url))


# --- in a real browser, inside a shop's page --------------------------------------------------

SHORT = {
    "title": "Quick one",
    "thank_you": "Thank you, really!",
    "questions": [
        {
            "id": "colour",
            "type": "single_choice",
            "prompt": "Favourite colour?",
            "options": [{"id": "red", "label": "Red"}, {"id": "blue", "label": "Blue"}],
        }
    ],
}


@pytest.fixture
def host_site():
    """A shop's site on another origin (localhost, another port) whose page frames a survey
    and keeps the messages it gets; `host_site.frame(url)` sets the address it frames."""
    framed = {"url": ""}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = (
                f'<!doctype html><iframe id="survey" title="Survey" src="{framed["url"]}">'
                "</iframe><script>window.got = [];"
                " addEventListener('message', e => got.push(e.data));</script>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.origin = f"http://localhost:{server.server_port}"
    server.frame = lambda url: framed.update(url=url)
    yield server
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.browser
def test_in_the_shops_iframe_the_survey_is_answered_by_keyboard_and_tells_its_host(
    page, live_server, host_site
):
    get_shop().allowed_origins = host_site.origin
    db.session.commit()
    host_site.frame(live_server.url + shown(add_custom_survey(SHORT)))
    page.goto(host_site.origin)
    frame = page.frame_locator("#survey")
    frame.get_by_label("Red").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Enter")
    frame.get_by_text("Thank you, really!").wait_for()
    page.wait_for_function("got.some(m => m.patchwork === 'completed')")
    assert page.evaluate("got.filter(m => m.patchwork === 'height')[0].value") > 50
    page.keyboard.press("Escape")
    page.wait_for_function("got.some(m => m.patchwork === 'close')")
    assert stored("colour") == {"options": ["red"], "other": None}


@pytest.mark.browser
def test_a_site_that_is_not_allowed_cannot_frame_the_survey(page, live_server, host_site):
    host_site.frame(live_server.url + shown(add_custom_survey(SHORT)))
    page.goto(host_site.origin)
    page.wait_for_timeout(500)
    frame = page.frame(url=lambda url: "/r/" in url)
    assert frame is None or "Favourite colour?" not in frame.content()
