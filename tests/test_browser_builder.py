"""The survey builder in headless Chromium: from a template to a published survey, with htmx."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Survey

pytestmark = pytest.mark.browser

NEW_PROMPT = "Which yarn weight do you use most?"


def saved_survey() -> Survey:
    db.session.expire_all()
    return db.session.scalars(select(Survey)).one()


def test_build_a_survey_from_a_template_and_publish_it(owner_page, live_server, expect):
    page = owner_page
    page.goto(live_server.url + "/surveys/")
    page.get_by_role("button", name="New survey").click()
    page.get_by_role("button", name="Use the template: How would you describe your skill?").click()
    expect(page).to_have_url(re.compile(r"/surveys/\d+$"))
    expect(page.locator("#survey-status")).to_contain_text("Never published")
    preview = page.frame_locator("#survey-preview")
    expect(preview.get_by_text("How would you describe your skill?")).to_be_visible()

    # Add a question: its empty prompt is an error beside the field until it is written.
    page.get_by_label("New question").select_option("single_choice")
    page.get_by_role("button", name="Add question").click()
    card = page.locator("#question-q1")
    expect(card).to_contain_text("Question 2")
    prompt = card.get_by_label("Question", exact=True)
    expect(prompt).to_be_focused()
    expect(card.locator("#q-q1-prompt-error")).to_have_text("Enter the question.")
    prompt.fill(NEW_PROMPT)
    prompt.press("Tab")  # leaving the field saves it (htmx on change)
    expect(card.locator("#q-q1-prompt-error")).to_have_count(0)
    assert saved_survey().definition["questions"][1]["prompt"] == NEW_PROMPT

    # Tag a trait as the owner types it; it is saved in its one spelling.
    traits = card.locator("#o-q1-option_1-traits")
    traits.fill("Yarn weight: DK")
    card.locator("#option-q1-option_1").get_by_role("button", name="Save option").click()
    expect(page.locator("#o-q1-option_1-traits")).to_have_value("yarn_weight:dk")
    option = saved_survey().definition["questions"][1]["options"][0]
    assert option["traits"] == ["yarn_weight:dk"]

    # Reorder: the new question goes first, and the preview (the draft's first step) follows.
    page.get_by_role("button", name="Move question 2 up").click()
    expect(page.locator(".question-card").first).to_have_id("question-q1")
    expect(page.locator(".question-card").first).to_contain_text("Question 1")
    assert [q["id"] for q in saved_survey().definition["questions"]] == ["q1", "skill"]
    expect(preview.get_by_text(NEW_PROMPT)).to_be_visible()

    # Publish: shoppers now see this version, and nothing is left unpublished.
    page.get_by_role("button", name="Publish", exact=True).click()
    status = page.locator("#survey-status")
    expect(status).to_contain_text("Active")
    expect(status).not_to_contain_text("Unpublished changes")
    survey = saved_survey()
    assert survey.status == "active"
    assert survey.published == survey.definition

    # A later edit is saved as a draft and flagged until published again.
    page.locator("#details-title").fill("Knitting survey")
    page.locator("#details").get_by_role("button", name="Save").click()
    expect(status).to_contain_text("Unpublished changes")
    expect(status.get_by_role("heading", level=1)).to_have_text("Knitting survey")
    assert saved_survey().published["title"] != "Knitting survey"
