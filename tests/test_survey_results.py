"""A survey's results page and CSV export: funnel, charts, NPS, filters, paging, safety."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.shop import get_shop
from webapp.surveys.manage import publish
from webapp.surveys.responses import (
    Identity,
    dismiss_response,
    record_answer,
    sign_identity,
    start_response,
)
from webapp.surveys.stats import ResultsFilter, funnel

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

MIXED = {
    "version": 1,
    "title": "How was it?",
    "questions": [
        {"id": "stars", "type": "rating", "prompt": "Rate your order", "required": True},
        {"id": "score", "type": "nps", "prompt": "Recommend us?", "required": True},
        {"id": "why", "type": "short_text", "prompt": "Anything to add?", "required": False},
        {"id": "email", "type": "email", "prompt": "Your email?", "required": False},
    ],
}


def respond(survey, answers=(), *, at=T0, customer=None, dismiss=False, **fields):
    """One shopper shown `survey` at `at`, answering `answers` [(question, raw)] in order."""
    identity = Identity()
    if customer is not None:
        identity = Identity(customer_ref=customer.external_id)
        identity = Identity(
            customer_ref=customer.external_id,
            signature=sign_identity(get_shop().embed_secret, identity),
        )
    response = start_response(db.session, survey, get_shop(), identity=identity, now=at, **fields)
    for question_id, raw in answers:
        record_answer(db.session, response, question_id, raw, now=at + timedelta(seconds=5))
    if dismiss:
        dismiss_response(response, at + timedelta(seconds=9))
    db.session.commit()
    return response


def mixed_survey():
    from webapp.models import Survey

    survey = Survey(slug="how-was-it", definition=MIXED)
    db.session.add(survey)
    publish(survey)
    db.session.commit()
    return survey


PROFILE = [("craft", ["knitting"]), ("skill", "beginner"), ("occasion", "gift")]


@pytest.fixture
def profile(app):
    """A post-purchase survey: 4 shown, 3 started, 2 completed, 1 dismissed."""
    ada = add_customer("Ada", "Lovelace", "ada@example.com", external_id="c-1")
    survey = add_survey("post_purchase_profile")
    respond(survey, [*PROFILE, ("heard_from", "instagram")], customer=ada)
    respond(
        survey,
        [("craft", ["knitting", "sewing"]), ("skill", "experienced"), ("occasion", "self"),
         ("heard_from", "friend")],
        at=T0 + timedelta(days=3),
    )  # fmt: skip
    respond(
        survey, [("craft", {"options": ["other"], "other": "Macramé"})], at=T0 + timedelta(days=5)
    )
    respond(survey, dismiss=True, at=T0 + timedelta(days=6))
    return survey, ada


def results_url(survey, **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return f"/surveys/{survey.id}/results" + (f"?{query}" if query else "")


def csv_rows(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_results_and_export_need_a_login(client, auth, profile):
    survey, _ = profile
    auth.create_owner()
    for url in (results_url(survey), f"/surveys/{survey.id}/responses.csv"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


def test_an_unknown_survey_is_404(owner_client):
    assert owner_client.get("/surveys/999/results").status_code == 404
    assert owner_client.get(f"/surveys/{2**70}/responses.csv").status_code == 404


def test_the_funnel_counts_shown_started_completed_and_dismissed(owner_client, profile):
    survey, _ = profile
    numbers = funnel(db.session, survey.id, ResultsFilter())
    assert (numbers.shown, numbers.started, numbers.completed, numbers.dismissed) == (4, 3, 2, 1)

    page = owner_client.get(results_url(survey)).get_data(as_text=True)

    funnel_html = page.split('id="funnel-heading"')[1].split("</section>")[0]
    for label, count, percent in [
        ("Shown", 4, 100), ("Started", 3, 75), ("Completed", 2, 50), ("Dismissed", 1, 25),
    ]:  # fmt: skip
        assert f'<th scope="row">{label}</th>' in funnel_html
        assert f'<td class="num">{count}</td>' in funnel_html
        assert f"{percent}%</span>" in funnel_html


def chart_html(page: str, prompt: str) -> str:
    return page.split(f"<h3>{prompt}</h3>")[1].split("</article>")[0]


def bar(html: str, label: str) -> tuple[int, str]:
    """(count, percent text) of the bar labelled `label` in a chart's HTML."""
    row = html.split(f'<th scope="row">{label}</th>')[1].split("</tr>")[0]
    count = int(row.split('<td class="num">')[1].split("<")[0].replace(",", ""))
    percent = row.split('<span class="bar-text">')[1].split("<")[0]
    return count, percent


def test_choice_charts_count_each_option_other_included(owner_client, profile):
    survey, _ = profile

    page = owner_client.get(results_url(survey)).get_data(as_text=True)

    craft = chart_html(page, "What are you making?")
    assert "3 answers" in craft
    assert bar(craft, "Knitting") == (2, "67%")
    assert bar(craft, "Sewing") == (1, "33%")
    assert bar(craft, "Something else") == (1, "33%")
    assert bar(craft, "Crochet") == (0, "0%")
    assert bar(chart_html(page, "How would you describe your skill?"), "Beginner") == (1, "50%")


def test_rating_nps_text_and_email_results(owner_client, app):
    survey = mixed_survey()
    for stars, score, why, email in [
        (5, 10, "Lovely yarn", {"email": "a@example.com", "consent": True}),
        (4, 9, None, {"email": "b@example.com", "consent": False}),
        (4, 8, "", None),
        (1, 0, "<script>alert('x')</script>", None),
    ]:
        respond(survey, [("stars", stars), ("score", score), ("why", why), ("email", email)])

    page = owner_client.get(results_url(survey)).get_data(as_text=True)

    stars = chart_html(page, "Rate your order")
    assert "Average 3.50" in stars
    assert bar(stars, "4") == (2, "50%") and bar(stars, "2") == (0, "0%")
    nps = chart_html(page, "Recommend us?")
    # 2 promoters, 1 passive, 1 detractor of 4: (2 - 1) / 4 = +25.
    assert "NPS +25.0" in nps
    assert "2 promoters (9–10), 1 passives (7–8), 1 detractors (0–6)" in nps
    assert bar(nps, "10") == (1, "25%") and bar(nps, "0") == (1, "25%")
    why = chart_html(page, "Anything to add?")
    assert "2 answers" in why  # the skipped and the blank ones are not answers
    assert "Lovely yarn" in why
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in why
    assert "2 gave an address; 1 of them agreed to marketing emails" in page


def test_the_responses_list_shows_answers_in_words_and_links_the_customer(owner_client, profile):
    survey, ada = profile

    page = owner_client.get(results_url(survey)).get_data(as_text=True)

    responses = page.split('id="responses-heading"')[1]
    assert f'<a href="/customers/{ada.id}">Ada Lovelace</a>' in responses
    assert responses.count("anonymous") == 3
    assert "<dd>Knitting, Sewing</dd>" in responses
    assert "<dd>Something else: Macramé</dd>" in responses
    assert "<dd>Instagram</dd>" in responses
    assert "dismissed" in responses and "partial" in responses


def test_the_customer_link_names_an_order_the_response_came_with(owner_client, app):
    ada = add_customer("Ada", email="ada@example.com")
    order = add_order(ada, "#1001", 4200)
    survey = add_survey("occasion")
    identity = Identity(order_ref="1001")
    signed = Identity(order_ref="1001", signature=sign_identity(get_shop().embed_secret, identity))
    response = start_response(db.session, survey, get_shop(), identity=signed)
    record_answer(db.session, response, "occasion", "gift")
    db.session.commit()

    page = owner_client.get(results_url(survey)).get_data(as_text=True)

    assert f'href="/customers/{ada.id}"' in page and f"order {order.external_id}" in page


@pytest.mark.parametrize(
    ("args", "shown", "knitting"),
    [
        ({}, 4, 2),
        ({"who": "linked"}, 1, 1),
        ({"who": "anonymous"}, 3, 1),
        ({"answer": "craft:knitting"}, 2, 2),
        ({"answer": "craft:other"}, 1, 0),
        ({"answer": "skill:experienced", "who": "anonymous"}, 1, 1),
        # T0 is 07:00 on 1 March in New York; day 3 is 4 March.
        ({"since": "2025-03-01", "until": "2025-03-01"}, 1, 1),
        ({"since": "2025-03-02"}, 3, 1),
        ({"until": "2025-03-05"}, 2, 2),
        ({"since": "2025-03-06", "until": "2025-03-04"}, 2, 1),  # backwards: the same days
    ],
)
def test_filters_apply_to_funnel_charts_and_list(owner_client, profile, args, shown, knitting):
    survey, _ = profile
    get_shop().timezone = "America/New_York"
    db.session.commit()

    response = owner_client.get(results_url(survey, **args))

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    funnel_html = page.split('id="funnel-heading"')[1].split("</section>")[0]
    assert bar(funnel_html, "Shown")[0] == shown
    assert bar(chart_html(page, "What are you making?"), "Knitting")[0] == knitting
    rows = page.split('id="responses-heading"')[1].count("<tr>") - 1  # minus the header
    assert rows == shown


def test_the_shop_time_zone_decides_which_day_a_response_belongs_to(owner_client, app):
    survey = add_survey("occasion")
    respond(survey, [("occasion", "gift")], at=datetime(2025, 3, 2, 3, 0, tzinfo=UTC))
    get_shop().timezone = "America/New_York"  # 22:00 on 1 March there
    db.session.commit()

    on_first = owner_client.get(results_url(survey, since="2025-03-01", until="2025-03-01"))
    on_second = owner_client.get(results_url(survey, since="2025-03-02"))

    assert "1 answer<" in chart_html(on_first.get_data(as_text=True), "Is this a gift or for you?")
    assert "0 answers" in chart_html(on_second.get_data(as_text=True), "Is this a gift or for you?")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"since": "yesterday"}, "Not a valid date value"),
        ({"answer": "craft:nope"}, "Not a valid choice"),
        ({"who": "everybody"}, "Not a valid choice"),
    ],
)
def test_a_bad_filter_is_a_400_with_the_error_beside_the_field(owner_client, profile, args, error):
    survey, _ = profile

    page = owner_client.get(results_url(survey, **args))
    export = owner_client.get(f"/surveys/{survey.id}/responses.csv", query_string=args)

    assert page.status_code == 400
    assert 'class="field-error"' in page.get_data(as_text=True)
    assert error in page.get_data(as_text=True)
    assert export.status_code == 400 and error in export.get_data(as_text=True)


def test_htmx_filtering_returns_the_results_alone(owner_client, profile):
    survey, _ = profile

    response = owner_client.get(
        results_url(survey, who="linked"),
        headers={"HX-Request": "true", "HX-Target": "survey-results"},
    )

    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="survey-results">')
    assert "<html" not in html and "Apply filters" not in html
    assert "HX-Request" in response.headers["Vary"]
    # The export link keeps the filters.
    assert f"/surveys/{survey.id}/responses.csv?who=linked" in html


def test_the_page_offers_the_filters_as_a_plain_get_form_wired_for_htmx(owner_client, profile):
    survey, _ = profile

    page = owner_client.get(results_url(survey, answer="skill:beginner")).get_data(as_text=True)

    form = page.split('<form action="/surveys/')[1].split("</form>")[0]
    assert 'method="get"' in form and 'hx-push-url="true"' in form
    assert 'hx-target="#survey-results"' in form
    assert '<optgroup label="How would you describe your skill?">' in form
    assert '<option selected value="skill:beginner">Beginner</option>' in form


def test_the_responses_list_pages_newest_first(owner_client, app):
    survey = add_survey("occasion")
    for n in range(30):
        respond(survey, [("occasion", "gift")], at=T0 + timedelta(minutes=n))

    first = owner_client.get(results_url(survey)).get_data(as_text=True)

    first_list = first.split('id="responses-heading"')[1]
    assert first_list.count("<tr>") - 1 == 25
    assert "2025-03-01 12:29" in first_list and "2025-03-01 12:04" not in first_list
    next_url = first_list.split('id="page-next" href="')[1].split('"')[0].replace("&amp;", "&")

    second = owner_client.get(
        next_url, headers={"HX-Request": "true", "HX-Target": "survey-results"}
    )

    second_list = second.get_data(as_text=True).split('id="responses-heading"')[1]
    assert second_list.count("<tr>") - 1 == 5
    assert "2025-03-01 12:04" in second_list and "2025-03-01 12:05" not in second_list
    assert 'id="page-next"' not in second_list and "← Newest" in second_list


def test_a_broken_page_link_shows_the_first_page(owner_client, profile):
    survey, _ = profile
    response = owner_client.get(results_url(survey, after="x_y"))
    assert response.status_code == 200


def test_export_has_a_row_per_response_and_a_column_per_question(owner_client, profile):
    survey, ada = profile

    response = owner_client.get(f"/surveys/{survey.id}/responses.csv")

    assert response.mimetype == "text/csv"
    assert response.is_streamed
    assert "attachment" in response.headers["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header[-4:] == [
        "What are you making?",
        "How would you describe your skill?",
        "Is this a gift or for you?",
        "How did you hear about us?",
    ]
    assert len(rows) == 4
    linked = next(r for r in rows if r[header.index("Customer id")])
    assert linked[header.index("Customer")] == "Ada Lovelace"
    assert linked[header.index("Email")] == "ada@example.com"
    assert linked[-4:] == ["Knitting", "Beginner", "A gift", "Instagram"]
    assert linked[header.index("Shown at")] == "2025-03-01 12:00:00"  # the shop's zone: UTC


def test_export_neutralises_spreadsheet_formulas_and_takes_the_filters(owner_client, app):
    survey = add_survey("post_purchase_profile")
    ada = add_customer("Ada", email="ada@example.com", external_id="c-1")
    respond(survey, [("craft", {"options": ["other"], "other": '=HYPERLINK("http://x")'})])
    respond(
        survey,
        [("craft", {"options": ["other"], "other": "@SUM(A1)"})],
        customer=ada,
        page_url="-2+3",
    )

    everyone = csv_rows(owner_client.get(f"/surveys/{survey.id}/responses.csv"))
    linked = csv_rows(owner_client.get(f"/surveys/{survey.id}/responses.csv?who=linked"))

    cells = {cell for row in everyone[1:] for cell in row}
    assert 'Something else: =HYPERLINK("http://x")' in cells  # the label comes first
    assert "'-2+3" in cells
    assert len(linked) == 2 and "Something else: @SUM(A1)" in linked[1]
    for row in everyone:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)


def test_export_neutralises_a_free_text_answer_that_starts_a_formula(owner_client, app):
    survey = mixed_survey()
    respond(survey, [("stars", 3), ("score", 7), ("why", "=1+1"), ("email", None)])

    header, row = csv_rows(owner_client.get(f"/surveys/{survey.id}/responses.csv"))

    assert row[header.index("Anything to add?")] == "'=1+1"
    assert row[header.index("Recommend us?")] == "7"


def test_a_draft_never_published_has_no_results_even_when_half_edited(owner_client, app):
    survey = add_survey("occasion", publish=False)
    survey.definition = {**survey.definition, "questions": []}  # invalid while being edited
    db.session.commit()

    page = owner_client.get(results_url(survey))
    export = owner_client.get(f"/surveys/{survey.id}/responses.csv")

    assert page.status_code == 200 and "not published yet" in page.get_data(as_text=True)
    assert export.status_code == 404 and "never been published" in export.get_data(as_text=True)
