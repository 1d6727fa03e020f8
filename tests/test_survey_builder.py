"""The owner's survey pages: list, templates, the builder's edits, publish, survey settings."""

import re

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_from
from tests.factories import add_survey
from webapp.extensions import db
from webapp.models import ShopSettings, Survey
from webapp.surveys import drafts

HTMX = {"HX-Request": "true"}


def fresh(survey_id: int) -> Survey:
    db.session.expire_all()
    return db.session.get(Survey, survey_id)


def post(client, url: str, data: dict | None = None, htmx: bool = False):
    token = csrf_from(client.get("/surveys/"))
    headers = {**HTMX, "X-CSRFToken": token} if htmx else {}
    payload = dict(data or {})
    if not htmx:
        payload["csrf_token"] = token
    return client.post(url, data=payload, headers=headers)


def error_beside(html: str, field_id: str) -> str:
    """The text of the error shown next to the input with this id."""
    found = re.findall(
        rf'<small class="field-error" id="{re.escape(field_id)}-error">([^<]*)</small>', html
    )
    assert found, f"no error next to {field_id}"
    return " ".join(found).replace("&#39;", "'").replace("&#34;", '"')


def question_fields(survey: Survey, question_id: str, **changes) -> dict:
    """The posted form of a question as the builder shows it, with changes."""
    _, question = drafts.find_question(survey.definition, question_id)
    data = {"prompt": question["prompt"], "type": question["type"]}
    if question.get("required"):
        data["required"] = "y"
    data.update(changes)
    return {f"q-{question_id}-{k}": v for k, v in data.items() if v is not None}


def option_fields(question_id: str, option_id: str, **fields) -> dict:
    return {f"o-{question_id}-{option_id}-{k}": v for k, v in fields.items()}


def prompts(survey: Survey) -> list[str]:
    return [q["id"] for q in survey.definition["questions"]]


# --- list and templates ------------------------------------------------------------------


def test_surveys_need_the_owner_login(client, auth):
    auth.create_owner()
    for url in ("/surveys/", "/surveys/new"):
        assert client.get(url).headers["Location"].startswith("/login")


def test_the_list_shows_each_survey_with_links_to_builder_and_results(owner_client):
    survey = add_survey("exit_intent_objection", publish=True)
    html = owner_client.get("/surveys/").get_data(as_text=True)
    assert "Before you go" in html
    assert "Exit intent" in html and "Active" in html
    assert f'href="/surveys/{survey.id}"' in html
    assert f'href="/surveys/{survey.id}/results"' in html


def test_one_click_on_a_template_makes_a_draft_and_opens_the_builder(owner_client):
    html = owner_client.get("/surveys/new").get_data(as_text=True)
    assert "Exit intent: what stopped you today?" in html
    response = post(owner_client, "/surveys/new", {"template": "exit_intent_objection"})
    survey = db.session.scalars(select(Survey)).one()
    assert response.status_code == 303
    assert response.headers["Location"] == f"/surveys/{survey.id}"
    assert survey.status == "draft" and survey.published is None
    assert survey.template_key == "exit_intent_objection"
    page = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "What stopped you today?" in page
    assert "Never published" in page


def test_a_blank_survey_is_valid_and_can_be_published_at_once(owner_client):
    post(owner_client, "/surveys/new", {"template": "blank"})
    survey = db.session.scalars(select(Survey)).one()
    assert survey.template_key is None
    post(owner_client, f"/surveys/{survey.id}/publish")
    assert fresh(survey.id).status == "active"


def test_an_unknown_template_is_a_400_and_makes_nothing(owner_client):
    response = post(owner_client, "/surveys/new", {"template": "nope"})
    assert response.status_code == 400
    assert "Choose a template" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Survey)) == 0


def test_an_unknown_survey_question_or_option_is_a_404(owner_client):
    survey = add_survey("skill", publish=False)
    assert owner_client.get("/surveys/999").status_code == 404
    assert owner_client.get(f"/surveys/{2**70}").status_code == 404
    assert post(owner_client, f"/surveys/{survey.id}/questions/nope", {}).status_code == 404
    url = f"/surveys/{survey.id}/questions/skill/options/nope/delete"
    assert post(owner_client, url).status_code == 404


# --- questions ---------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_adding_a_question_saves_the_draft_and_shows_its_missing_prompt(owner_client, htmx):
    survey = add_survey("skill", publish=False)
    response = post(owner_client, f"/surveys/{survey.id}/questions", {"add-type": "rating"}, htmx)
    survey = fresh(survey.id)
    assert prompts(survey) == ["skill", "q1"]
    assert survey.definition["questions"][1]["type"] == "rating"
    if htmx:
        assert response.status_code == 200
        assert response.headers["HX-Trigger"] == "survey-changed"
        html = response.get_data(as_text=True)
        assert '<section id="questions">' in html
        assert 'id="survey-status" class="survey-status" hx-swap-oob="true"' in html
        assert "Unpublished" not in html and "Never published" in html
        assert "Enter the question." in error_beside(html, "q-q1-prompt")
    else:
        assert response.status_code == 303
        assert response.headers["Location"] == f"/surveys/{survey.id}#question-q1"


@pytest.mark.parametrize("htmx", [False, True])
def test_editing_a_question_saves_the_draft_but_not_what_shoppers_see(owner_client, htmx):
    survey = add_survey("skill", publish=True)
    fields = question_fields(survey, "skill", prompt="  Your level?  ", required=None)
    response = post(owner_client, f"/surveys/{survey.id}/questions/skill", fields, htmx)
    survey = fresh(survey.id)
    question = survey.definition["questions"][0]
    assert (question["prompt"], question["required"]) == ("Your level?", False)
    assert survey.published["questions"][0]["prompt"] == "How would you describe your skill?"
    page = (
        response.get_data(as_text=True) if htmx else owner_client.get(f"/surveys/{survey.id}").text
    )
    assert "Unpublished changes" in page


def test_an_empty_prompt_is_saved_in_the_draft_and_shown_beside_the_field(owner_client):
    survey = add_survey("skill", publish=False)
    fields = question_fields(survey, "skill", prompt="")
    response = post(owner_client, f"/surveys/{survey.id}/questions/skill", fields, htmx=True)
    assert "Enter the question." in error_beside(response.text, "q-skill-prompt")
    assert fresh(survey.id).definition["questions"][0]["prompt"] == ""
    # The plain page shows the same error beside the same field.
    assert "Enter the question." in error_beside(
        owner_client.get(f"/surveys/{survey.id}").text, "q-skill-prompt"
    )


def test_a_not_a_number_length_is_a_form_error_and_nothing_is_saved(owner_client):
    survey = add_survey("exit_intent_objection", publish=False)
    before = fresh(survey.id).definition
    fields = question_fields(survey, "looking_for", max_length="lots", prompt="Changed?")
    response = post(owner_client, f"/surveys/{survey.id}/questions/looking_for", fields)
    assert response.status_code == 200
    assert "Not a valid integer value." in error_beside(response.text, "q-looking_for-max_length")
    assert 'value="Changed?"' in response.text  # what the owner typed stays in the form
    assert fresh(survey.id).definition == before


def test_changing_a_new_questions_type_keeps_its_prompt(owner_client):
    survey = add_survey("skill", publish=False)
    fields = question_fields(survey, "skill", type="multiple_choice")
    post(owner_client, f"/surveys/{survey.id}/questions/skill", fields)
    question = fresh(survey.id).definition["questions"][0]
    assert question["type"] == "multiple_choice"
    assert [o["id"] for o in question["options"]] == ["beginner", "intermediate", "experienced"]
    fields = question_fields(fresh(survey.id), "skill", type="nps")
    post(owner_client, f"/surveys/{survey.id}/questions/skill", fields)
    question = fresh(survey.id).definition["questions"][0]
    assert question["type"] == "nps" and "options" not in question
    assert question["prompt"] == "How would you describe your skill?"


def test_a_published_questions_type_is_fixed(owner_client):
    survey = add_survey("skill", publish=True)
    fields = question_fields(survey, "skill", type="short_text")
    post(owner_client, f"/surveys/{survey.id}/questions/skill", fields)
    assert fresh(survey.id).definition["questions"][0]["type"] == "single_choice"
    html = owner_client.get(f"/surveys/{survey.id}").text
    assert re.search(
        r'<select[^>]*disabled[^>]*id="q-skill-type"|<select[^>]*id="q-skill-type"[^>]*disabled',
        html,
    )


def test_a_new_question_never_takes_the_id_of_a_published_one(owner_client):
    survey = add_survey("occasion", publish=False)
    post(owner_client, f"/surveys/{survey.id}/questions", {"add-type": "nps"})
    fields = question_fields(fresh(survey.id), "q1", prompt="Recommend us?")
    post(owner_client, f"/surveys/{survey.id}/questions/q1", fields)
    post(owner_client, f"/surveys/{survey.id}/publish")
    assert fresh(survey.id).status == "active"
    post(owner_client, f"/surveys/{survey.id}/questions/q1/delete")
    post(owner_client, f"/surveys/{survey.id}/questions", {"add-type": "short_text"})
    assert prompts(fresh(survey.id)) == ["occasion", "q2"]


@pytest.mark.parametrize("htmx", [False, True])
def test_questions_move_up_and_down(owner_client, htmx):
    survey = add_survey("post_purchase_profile", publish=False)
    url = f"/surveys/{survey.id}/questions/skill/move"
    response = post(owner_client, url, {"direction": "up"}, htmx)
    assert prompts(fresh(survey.id)) == ["skill", "craft", "occasion", "heard_from"]
    if not htmx:
        assert response.headers["Location"] == f"/surveys/{survey.id}#question-skill"
    post(owner_client, url, {"direction": "up"}, htmx)  # already first: nothing moves
    post(owner_client, f"/surveys/{survey.id}/questions/craft/move", {"direction": "down"}, htmx)
    assert prompts(fresh(survey.id)) == ["skill", "occasion", "craft", "heard_from"]
    assert post(owner_client, url, {"direction": "sideways"}).status_code == 400


def test_deleting_a_question_sends_jumps_to_it_on_to_the_next(owner_client):
    survey = add_survey("exit_intent_objection", publish=False)
    draft = drafts.update_option(
        survey.definition, "objection", "price", label="The price", traits=[], jump="looking_for"
    )
    survey.definition = draft
    db.session.commit()
    response = post(owner_client, f"/surveys/{survey.id}/questions/looking_for/delete", htmx=True)
    survey = fresh(survey.id)
    assert prompts(survey) == ["objection"]
    price = drafts.find_option(survey.definition["questions"][0], "price")[1]
    assert price["jump"] is None
    assert "What were you looking for?" not in response.text


# --- options and traits ------------------------------------------------------------------


def test_adding_editing_reordering_and_deleting_options(owner_client):
    survey = add_survey("skill", publish=False)
    base = f"/surveys/{survey.id}/questions/skill/options"
    response = post(owner_client, base, htmx=True)
    assert response.headers["HX-Trigger"] == "survey-changed"
    assert 'id="question-skill"' in response.text
    options = fresh(survey.id).definition["questions"][0]["options"]
    assert options[-1] == {"id": "option_4", "label": "Option 4", "traits": [], "jump": None}
    fields = option_fields(
        "skill", "option_4", label="Expert", traits="Skill: Expert, level:Pro  Max", jump="end"
    )
    post(owner_client, f"{base}/option_4", fields)
    option = fresh(survey.id).definition["questions"][0]["options"][-1]
    assert option == {
        "id": "option_4",
        "label": "Expert",
        "traits": ["skill:expert", "level:pro_max"],
        "jump": "end",
    }
    post(owner_client, f"{base}/option_4/move", {"direction": "up"})
    ids = [o["id"] for o in fresh(survey.id).definition["questions"][0]["options"]]
    assert ids == ["beginner", "intermediate", "option_4", "experienced"]
    post(owner_client, f"{base}/beginner/delete")
    ids = [o["id"] for o in fresh(survey.id).definition["questions"][0]["options"]]
    assert ids == ["intermediate", "option_4", "experienced"]


def test_a_mistyped_trait_is_kept_and_explained_beside_the_traits(owner_client):
    survey = add_survey("skill", publish=False)
    fields = option_fields("skill", "beginner", label="Beginner", traits="skill:beginner, newbie")
    url = f"/surveys/{survey.id}/questions/skill/options/beginner"
    response = post(owner_client, url, fields, htmx=True)
    message = error_beside(response.text, "o-skill-beginner-traits")
    assert "“newbie”: Write a trait as dimension:value" in message
    option = fresh(survey.id).definition["questions"][0]["options"][0]
    assert option["traits"] == ["skill:beginner", "newbie"]


def test_a_jump_backwards_after_a_reorder_is_an_error_beside_the_jump(owner_client):
    survey = add_survey("post_purchase_profile", publish=False)
    url = f"/surveys/{survey.id}/questions/skill/options/beginner"
    post(owner_client, url, option_fields("skill", "beginner", label="Beginner", jump="heard_from"))
    post(owner_client, f"/surveys/{survey.id}/questions/heard_from/move", {"direction": "up"})
    post(owner_client, f"/surveys/{survey.id}/questions/heard_from/move", {"direction": "up"})
    html = owner_client.get(f"/surveys/{survey.id}").text
    assert "A jump can only go to a later question." in error_beside(html, "o-skill-beginner-jump")


def test_a_choice_question_needs_two_options(owner_client):
    survey = add_survey("skill", publish=False)
    for option_id in ("beginner", "intermediate"):
        post(owner_client, f"/surveys/{survey.id}/questions/skill/options/{option_id}/delete")
    html = owner_client.get(f"/surveys/{survey.id}").text
    assert "Give at least two options." in html


# --- details and triggers ----------------------------------------------------------------


def test_a_template_shows_the_default_thank_you_text_it_will_use(owner_client):
    survey = add_survey("skill", publish=False)
    assert "thank_you" not in survey.definition
    html = owner_client.get(f"/surveys/{survey.id}").text
    assert re.search(r'<input[^>]*id="details-thank_you"[^>]*value="Thank you!"', html)


def test_title_and_thank_you_text_are_saved(owner_client):
    survey = add_survey("skill", publish=False)
    data = {"details-title": " Quick question ", "details-thank_you": "Merci!"}
    response = post(owner_client, f"/surveys/{survey.id}/details", data, htmx=True)
    assert response.headers["HX-Trigger"] == "survey-changed"
    assert "<h1>Quick question</h1>" in response.text  # the status bar, out of band
    definition = fresh(survey.id).definition
    assert (definition["title"], definition["thank_you"]) == ("Quick question", "Merci!")


VALID_TRIGGERS = {
    "triggers-kind": "after_seconds",
    "triggers-delay_seconds": "20",
    "triggers-url_include": "/products/*\n\n  https://shop.example/collections/*  ",
    "triggers-url_exclude": "/checkout*",
    "triggers-device": "mobile",
    "triggers-sample_percent": "50",
    "triggers-frequency": "every_n_days",
    "triggers-frequency_days": "30",
}


def test_trigger_settings_are_saved(owner_client):
    survey = add_survey("skill", publish=False)
    post(owner_client, f"/surveys/{survey.id}/triggers", VALID_TRIGGERS)
    assert fresh(survey.id).definition["triggers"] == {
        "kind": "after_seconds",
        "delay_seconds": 20,
        "url_include": ["/products/*", "https://shop.example/collections/*"],
        "url_exclude": ["/checkout*"],
        "device": "mobile",
        "sample_percent": 50,
        "frequency": "every_n_days",
        "frequency_days": 30,
    }


def test_a_delay_or_days_only_apply_to_their_kind(owner_client):
    survey = add_survey("skill", publish=False)
    data = {**VALID_TRIGGERS, "triggers-kind": "exit_intent", "triggers-frequency": "once"}
    post(owner_client, f"/surveys/{survey.id}/triggers", data)
    triggers = fresh(survey.id).definition["triggers"]
    assert triggers["delay_seconds"] is None and triggers["frequency_days"] is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("delay_seconds", "", "Delay must be a whole number from 1 to 3600."),
        ("delay_seconds", "9999", "Delay must be a whole number from 1 to 3600."),
        ("url_include", "/ok\nproducts/*", "“products/*”: Start a pattern with /"),
        ("url_exclude", "/cart?x=1", "leave out ? and #"),
        ("sample_percent", "150", "Sample must be a whole number from 0 to 100."),
        ("frequency_days", "0", "Days must be a whole number from 1 to 365."),
    ],
)
def test_invalid_trigger_settings_show_the_error_beside_the_field(
    owner_client, field, value, message
):
    survey = add_survey("skill", publish=False)
    data = {**VALID_TRIGGERS, f"triggers-{field}": value}
    response = post(owner_client, f"/surveys/{survey.id}/triggers", data, htmx=True)
    assert response.status_code == 200
    assert message in error_beside(response.text, f"triggers-{field}")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sample_percent", "", "Enter a percentage."),
        ("kind", "sometimes", "Not a valid choice."),
        ("frequency_days", "often", "Not a valid integer value."),
    ],
)
def test_unreadable_trigger_settings_are_form_errors_and_nothing_is_saved(
    owner_client, field, value, message
):
    survey = add_survey("skill", publish=False)
    before = fresh(survey.id).definition
    data = {**VALID_TRIGGERS, f"triggers-{field}": value}
    response = post(owner_client, f"/surveys/{survey.id}/triggers", data)
    assert response.status_code == 200
    assert message in error_beside(response.text, f"triggers-{field}")
    assert fresh(survey.id).definition == before


# --- publish, pause, resume --------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_publish_refuses_an_invalid_draft_and_says_why(owner_client, htmx):
    survey = add_survey("skill", publish=False)
    post(
        owner_client,
        f"/surveys/{survey.id}/details",
        {"details-title": "", "details-thank_you": "x"},
    )
    response = post(owner_client, f"/surveys/{survey.id}/publish", htmx=htmx)
    assert response.status_code == 200
    html = response.text
    assert "Not published: 1 problem(s) to fix first" in html
    assert "<strong>title</strong>: Enter a title." in html
    assert "HX-Trigger" not in response.headers
    survey = fresh(survey.id)
    assert survey.status == "draft" and survey.published is None
    if not htmx:
        assert "Enter a title." in error_beside(html, "details-title")


def test_publish_pause_and_resume(owner_client):
    survey = add_survey("skill", publish=False)
    response = post(owner_client, f"/surveys/{survey.id}/publish")
    assert response.status_code == 303
    survey = fresh(survey.id)
    assert survey.status == "active" and survey.published == survey.definition
    html = owner_client.get(f"/surveys/{survey.id}").text
    assert "Unpublished changes" not in html and "Pause" in html
    response = post(owner_client, f"/surveys/{survey.id}/pause", htmx=True)
    assert "Resume" in response.text and fresh(survey.id).status == "paused"
    post(owner_client, f"/surveys/{survey.id}/resume")
    assert fresh(survey.id).status == "active"


def test_publishing_changes_clears_the_unpublished_badge(owner_client):
    survey = add_survey("skill", publish=True)
    post(
        owner_client,
        f"/surveys/{survey.id}/details",
        {"details-title": "New", "details-thank_you": "x"},
    )
    assert "Unpublished changes" in owner_client.get("/surveys/").text
    post(owner_client, f"/surveys/{survey.id}/publish")
    survey = fresh(survey.id)
    assert survey.published["title"] == "New"
    assert "Unpublished changes" not in owner_client.get("/surveys/").text


# --- escaping ----------------------------------------------------------------------------


def test_owner_text_is_escaped_everywhere(owner_client):
    survey = add_survey("skill", publish=False)
    evil = '<script>alert("x")</script>'
    post(
        owner_client,
        f"/surveys/{survey.id}/details",
        {"details-title": evil, "details-thank_you": evil},
    )
    post(
        owner_client,
        f"/surveys/{survey.id}/questions/skill",
        question_fields(survey, "skill", prompt=evil),
    )
    post(
        owner_client,
        f"/surveys/{survey.id}/questions/skill/options/beginner",
        option_fields("skill", "beginner", label=evil, traits=evil),
    )
    for url in ("/surveys/", f"/surveys/{survey.id}"):
        html = owner_client.get(url).text
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html


# --- survey settings ---------------------------------------------------------------------


def shop() -> ShopSettings:
    db.session.expire_all()
    return db.session.get(ShopSettings, 1)


SURVEY_SETTINGS = {
    "survey_cooldown_days": "14",
    "allowed_origins": "HTTPS://Shop.Example.com:443/\n\nhttps://shop.example.com\nhttp://localhost:8080",
}


def post_survey_settings(client, **changes):
    data = {**SURVEY_SETTINGS, **changes, "csrf_token": csrf_from(client.get("/settings/"))}
    return client.post("/settings/surveys", data={k: v for k, v in data.items() if v is not None})


def test_survey_settings_are_saved_and_normalised(owner_client):
    response = post_survey_settings(owner_client, trust_unsigned_identity="y")
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/#surveys"
    saved = shop()
    assert saved.survey_cooldown_days == 14
    assert saved.allowed_origins == "https://shop.example.com\nhttp://localhost:8080"
    assert saved.trust_unsigned_identity is True
    post_survey_settings(owner_client)  # an unticked checkbox sends nothing
    assert shop().trust_unsigned_identity is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("survey_cooldown_days", "", "Enter a number of days"),
        ("survey_cooldown_days", "366", "from 0 to 365"),
        ("survey_cooldown_days", "-1", "from 0 to 365"),
        ("allowed_origins", "https://ok.example\nshop.example.com", "Line 2: 'shop.example.com'"),
        ("allowed_origins", "https://shop.example.com/cart", "has a path"),
    ],
)
def test_invalid_survey_settings_show_the_error_beside_the_field(
    owner_client, field, value, message
):
    response = post_survey_settings(owner_client, **{field: value})
    assert response.status_code == 200
    assert message in error_beside(response.text, field)
    assert shop().survey_cooldown_days == 7  # nothing saved


def test_the_settings_page_gives_the_embed_tag_and_the_shopify_snippet(owner_client, app):
    html = owner_client.get("/settings/").text
    key = shop().embed_key
    base = app.config["PUBLIC_BASE_URL"].rstrip("/")
    assert (
        f'&lt;script async src="{base}/embed.js" data-shop-key="{key}"&gt;&lt;/script&gt;' in html
    )
    assert "hmac_sha256" in html and "PASTE-YOUR-EMBED-SECRET-HERE" in html
    assert "{{ order.name }}|{{ order.email }}|{{ customer.id }}" in html
    assert shop().embed_secret not in html
    # Right after regenerating, the snippet carries the new secret, once.
    response = owner_client.post(
        "/settings/embed-secret", data={"csrf_token": csrf_from(owner_client.get("/settings/"))}
    )
    assert f'hmac_sha256: "{shop().embed_secret}"' in response.text
