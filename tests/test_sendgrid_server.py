"""FakeSendGrid answers the real sendgrid client as SendGrid's v3 Mail Send would.

The campaign sender's tests and benchmark trust this stand-in, so it is checked here
with the real client library: what SendGrid accepts, what it refuses and how (status,
errors JSON, the exception the client raises), and the faults used to prove retries.
"""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
from urllib.error import URLError

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail, Personalization, To

from tests.sendgrid_server import MAIL_SEND_PATH, FakeSendGrid

KEY = "SG.test-key"
MAIL = {
    "personalizations": [{"to": [{"email": "jane@example.com", "name": "Jane"}]}],
    "from": {"email": "shop@example.com", "name": "The Shop"},
    "subject": "Spring wool is in",
    "content": [{"type": "text/plain", "value": "Hello"}, {"type": "text/html", "value": "<p>"}],
}
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@pytest.fixture
def sg():
    with FakeSendGrid(KEY) as server:
        yield server


@pytest.fixture
def client(sg) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=KEY, host=sg.url)


def mail(**changes) -> dict:
    payload = copy.deepcopy(MAIL)
    payload.update(changes)
    return payload


def errors_of(exc) -> list[dict]:
    return json.loads(exc.value.body)["errors"]


def post(sg: FakeSendGrid, body, headers=HEADERS) -> tuple[int, dict]:
    """One raw POST, for the checks the client library cannot get wrong on purpose."""
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
    try:
        conn.request(
            "POST", MAIL_SEND_PATH, body if isinstance(body, bytes) else json.dumps(body), headers
        )
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}
    finally:
        conn.close()


def test_a_valid_mail_is_accepted_with_a_message_id_and_recorded(sg, client):
    message = Mail(
        from_email="shop@example.com",
        to_emails="Jane@Example.com",
        subject="Spring wool is in",
        html_content="<p>Hello</p>",
    )
    response = client.send(message)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    assert sg.requests == [message.get()]
    assert sg.message_ids == [message_id]
    assert sg.recipients() == ["jane@example.com"]
    assert (sg.accepted_count(), sg.received) == (1, 1)


def test_plain_dict_payloads_get_their_own_message_ids(sg, client):
    first = client.send(mail())
    second = client.send(
        mail(personalizations=[{"to": [{"email": "a@example.com"}, {"email": "b@example.com"}]}])
    )

    assert first.headers["X-Message-Id"] != second.headers["X-Message-Id"]
    assert sg.recipients() == ["jane@example.com", "a@example.com", "b@example.com"]


def test_a_wrong_key_is_unauthorized_and_not_recorded(sg):
    with pytest.raises(UnauthorizedError) as exc:
        SendGridAPIClient(api_key="SG.wrong", host=sg.url).send(mail())

    assert exc.value.status_code == 401
    assert errors_of(exc) == [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
    assert (sg.accepted_count(), sg.received) == (0, 1)
    assert sg.rejections[-1][0] == 401
    assert post(sg, mail(), {"Content-Type": "application/json"})[0] == 401


def test_1001_personalizations_are_refused(sg, client):
    message = Mail(from_email="shop@example.com", subject="Hi", plain_text_content="Hello")
    for i in range(1001):
        personalization = Personalization()
        personalization.add_to(To(f"c{i}@example.com"))
        message.add_personalization(personalization)

    with pytest.raises(BadRequestsError) as exc:
        client.send(message)

    [problem] = errors_of(exc)
    assert problem["field"] == "personalizations"
    assert "1001 personalizations" in problem["message"]
    assert problem["help"].startswith("http://sendgrid.com/docs/")
    assert sg.accepted_count() == 0


def test_an_address_twice_across_personalizations_is_refused_whatever_its_case(sg, client):
    payload = mail(
        personalizations=[
            {"to": [{"email": "jane@example.com"}]},
            {"to": [{"email": "bob@example.com"}], "bcc": [{"email": "Jane@EXAMPLE.com"}]},
        ]
    )
    with pytest.raises(BadRequestsError) as exc:
        client.send(payload)

    [problem] = errors_of(exc)
    assert problem["field"] == "personalizations.1"
    assert "[Jane@EXAMPLE.com] in the personalizations.1.bcc field" in problem["message"]


def test_a_subject_is_required_without_a_template(sg, client):
    with pytest.raises(BadRequestsError) as exc:
        client.send(Mail(from_email="shop@example.com", to_emails="jane@example.com"))

    fields = {problem["field"] for problem in errors_of(exc)}
    assert fields == {"subject", "content"}


def test_every_personalization_may_carry_the_subject_instead(sg, client):
    payload = mail(personalizations=[{"to": [{"email": "jane@example.com"}], "subject": "Hi"}])
    del payload["subject"]

    assert client.send(payload).status_code == 202


def test_a_template_with_dynamic_data_needs_neither_subject_nor_content(sg, client):
    message = Mail(from_email="shop@example.com", to_emails="jane@example.com")
    message.template_id = "d-0123456789abcdef0123456789abcdef"
    message.dynamic_template_data = {"first_name": "Jane", "items": [{"name": "Wool"}]}

    assert client.send(message).status_code == 202
    [accepted] = sg.requests
    assert accepted["template_id"] == "d-0123456789abcdef0123456789abcdef"
    assert accepted["personalizations"][0]["dynamic_template_data"]["first_name"] == "Jane"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"personalizations": []}, "personalizations"),
        ({"personalizations": [{"cc": [{"email": "a@example.com"}]}]}, "personalizations.0.to"),
        (
            {"personalizations": [{"to": [{"email": "not-an-address"}]}]},
            "personalizations.0.to.0.email",
        ),
        (
            {"personalizations": [{"to": [{"email": "a@example.com"}], "cc": []}]},
            "personalizations.0.cc",
        ),
        (
            {"personalizations": [{"to": [{"email": f"c{i}@example.com"} for i in range(1001)]}]},
            "personalizations",
        ),
        ({"from": {"name": "No address"}}, "from.email"),
        ({"content": []}, "content"),
        ({"content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
        ({"custom_args": {"campaign": 7}}, "custom_args.campaign"),
        (
            {"personalizations": [{"to": [{"email": "a@example.com"}], "custom_args": {"n": 1}}]},
            "personalizations.0.custom_args.n",
        ),
        ({"custom_args": {"big": "x" * 10_000}}, "custom_args"),
        (
            {
                "custom_args": {"a": "x" * 6000},
                "personalizations": [
                    {"to": [{"email": "a@example.com"}], "custom_args": {"b": "y" * 4000}}
                ],
            },
            "personalizations.0.custom_args",
        ),
        ({"categories": [f"c{i}" for i in range(11)]}, "categories"),
        ({"categories": ["x" * 256]}, "categories.0"),
        ({"headers": {"X-Campaign": 7}}, "headers.X-Campaign"),
    ],
)
def test_sendgrid_parameter_checks(sg, changes, field):
    status, body = post(sg, mail(**changes))

    assert status == 400
    assert field in [problem["field"] for problem in body["errors"]]
    assert sg.rejections[-1] == (400, body)
    assert sg.accepted_count() == 0


def test_the_limits_themselves_are_allowed(sg):
    payload = mail(
        personalizations=[{"to": [{"email": f"c{i}@example.com"}]} for i in range(1000)],
        categories=["x" * 255] * 10,
        custom_args={"a": "x" * 9000},
    )
    assert post(sg, payload) == (202, {})
    assert len(sg.recipients()) == 1000


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (MAIL, {**HEADERS, "Content-Type": "text/plain"}),
        (b"{not json", HEADERS),
        ([MAIL], HEADERS),
    ],
)
def test_only_a_json_object_is_read(sg, body, headers):
    status, answer = post(sg, body, headers)

    assert status == 400
    assert answer["errors"][0]["field"] is None


def test_fail_next_429_gives_the_rate_limit_headers_then_lets_the_retry_through(sg, client):
    sg.fail_next(1, status=429, reset_in=5)

    with pytest.raises(TooManyRequestsError) as exc:
        client.send(mail())
    assert client.send(mail()).status_code == 202

    headers = exc.value.headers
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Limit"]) > 0
    assert abs(int(headers["X-RateLimit-Reset"]) - (time.time() + 5)) <= 1
    assert errors_of(exc)[0]["message"] == "too many requests"
    assert (sg.accepted_count(), sg.received) == (1, 2)


@pytest.mark.parametrize(
    ("status", "raised"), [(500, InternalServerError), (503, ServiceUnavailableError)]
)
def test_fail_next_server_errors(sg, client, status, raised):
    sg.fail_next(2, status=status)

    for _ in range(2):
        with pytest.raises(raised) as exc:
            client.send(mail())
        assert exc.value.status_code == status
        assert errors_of(exc)[0]["field"] is None
    assert client.send(mail()).status_code == 202
    assert sg.accepted_count() == 1


def test_reject_next_answers_its_4xx_and_message(sg, client):
    sg.reject_next(1, status=403, message="access forbidden")

    with pytest.raises(ForbiddenError) as exc:
        client.send(mail())

    assert errors_of(exc)[0]["message"] == "access forbidden"
    assert sg.accepted_count() == 0


def test_drop_next_cuts_the_connection_unanswered_but_keeps_the_payload(sg, client):
    sg.drop_next(1)

    with pytest.raises((URLError, ConnectionError, http.client.HTTPException)):
        client.send(mail())
    assert client.send(mail()).status_code == 202

    assert (sg.dropped, sg.dropped_requests) == (1, [mail()])
    assert (sg.accepted_count(), sg.received) == (1, 2)


def test_faults_apply_in_order_and_only_to_requests_that_pass_the_checks(sg, client):
    sg.fail_next(1, status=429)
    sg.drop_next(1)
    sg.reject_next(1)

    with pytest.raises(BadRequestsError):
        client.send(mail(subject=None))  # refused on its merits: no fault used
    with pytest.raises(TooManyRequestsError):
        client.send(mail())
    with pytest.raises((URLError, ConnectionError, http.client.HTTPException)):
        client.send(mail())
    with pytest.raises(BadRequestsError) as exc:
        client.send(mail())
    assert errors_of(exc)[0]["field"] is None
    assert client.send(mail()).status_code == 202

    assert [status for status, _ in sg.rejections] == [400, 429, 400]
    assert (sg.received, sg.dropped, sg.accepted_count()) == (5, 1, 1)


def test_delay_holds_the_answer_so_clients_time_out(sg):
    sg.delay = 0.3
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=0.05)

    with pytest.raises(TimeoutError):
        conn.request("POST", MAIL_SEND_PATH, json.dumps(MAIL), HEADERS)
        conn.getresponse()
    conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(sg):
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
    statuses = []
    for body in (MAIL, mail(subject=None), MAIL):
        conn.request("POST", MAIL_SEND_PATH, json.dumps(body), HEADERS)
        if not statuses:
            sock = conn.sock
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        assert conn.sock is sock
    conn.close()

    assert statuses == [202, 400, 202]
    assert sg.accepted_count() == 2


def test_concurrent_keep_alive_connections_are_all_recorded(sg):
    def send_from_one_connection(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
        for i in range(50):
            to = [{"email": f"w{worker}-{i}@example.com"}]
            conn.request(
                "POST", MAIL_SEND_PATH, json.dumps(mail(personalizations=[{"to": to}])), HEADERS
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 202
        conn.close()

    threads = [threading.Thread(target=send_from_one_connection, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sg.accepted_count() == sg.received == 400
    assert len(set(sg.message_ids)) == 400
    assert sorted(sg.recipients()) == sorted(
        f"w{w}-{i}@example.com" for w in range(8) for i in range(50)
    )


def test_reset_forgets_recordings_and_pending_faults(sg, client):
    client.send(mail())
    sg.fail_next(3)
    sg.delay = 1
    sg.reset()

    assert client.send(mail()).status_code == 202
    assert (sg.accepted_count(), sg.received, sg.rejections) == (1, 1, [])


def test_stop_is_quick_even_with_an_idle_keep_alive_connection():
    sg = FakeSendGrid().start()
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
    conn.request(
        "POST", MAIL_SEND_PATH, json.dumps(MAIL), {**HEADERS, "Authorization": "Bearer SG.test-key"}
    )
    assert conn.getresponse().status == 202

    started = time.perf_counter()
    sg.stop()
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ConnectionError):
        http.client.HTTPConnection("127.0.0.1", conn.port, timeout=1).connect()
    conn.close()
