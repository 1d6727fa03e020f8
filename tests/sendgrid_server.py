"""A local stand-in for SendGrid's v3 Mail Send API (POST /v3/mail/send).

The campaign sender's tests and benchmark cannot reach api.sendgrid.com (no internet
here), and a mock of the client library would not prove that the JSON we send passes
SendGrid's checks. FakeSendGrid is a real HTTP server that applies the documented
limits (1000 personalizations, 1000 recipients, unique addresses, custom_args under
10,000 bytes, at most 10 categories...) with SendGrid's error shape,
``{"errors": [{"message": ..., "field": ..., "help": ...}]}``, records what it
accepted, and can be told to answer 429/5xx, reject, stall or drop the connection so
that retries can be proven. Point SENDGRID_API_HOST at ``FakeSendGrid().url``.

It speaks HTTP/1.1 keep-alive from a thread per connection and keeps each request's
work small, so a benchmark's 8-16 connections get thousands of answers a second.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAIL_SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
KEPT_REJECTIONS = 100
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"

EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
INDEX = re.compile(r"\.\d+")
JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def error(message: str, field: str | None = None, help_url: str | None = None) -> dict:
    return {"message": message, "field": field, "help": help_url}


def errors_body(*errors: dict) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


def type_error(expected: str, value) -> str:
    given = JSON_TYPES.get(type(value), type(value).__name__)
    return f"Invalid type. Expected: {expected}, given: {given}."


def is_text(value) -> bool:
    return isinstance(value, str) and value != ""


def json_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def mail_errors(payload: dict) -> list[dict]:
    """SendGrid's parameter checks on a Mail Send body; an empty list means valid."""
    errors: list[dict] = []

    def add(field: str, message: str) -> None:
        errors.append(error(message, field, f"{HELP}#message.{INDEX.sub('', field)}"))

    check_personalizations(payload, add)
    check_sender(payload, add)
    check_body(payload, add)
    check_extras(payload, add)
    return errors


def check_personalizations(payload: dict, add) -> None:
    items = payload.get("personalizations")
    if not isinstance(items, list) or not items:
        add("personalizations", "You must have at least one personalization.")
        return
    if len(items) > MAX_PERSONALIZATIONS:
        add(
            "personalizations",
            f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations"
            f" per API request. You have provided {len(items)} personalizations. Please"
            " consider splitting this into multiple requests and resending your request.",
        )
        return
    top_args = payload.get("custom_args")
    base_args = top_args if isinstance(top_args, dict) else {}
    seen: set[str] = set()
    total = 0
    for i, item in enumerate(items):
        where = f"personalizations.{i}"
        if not isinstance(item, dict):
            add(where, type_error("object", item))
            continue
        total += check_recipients(item, where, seen, add)
        check_string_map(item.get("headers"), f"{where}.headers", add)
        check_string_map(item.get("custom_args"), f"{where}.custom_args", add)
        own_args = item.get("custom_args")
        if isinstance(own_args, dict) and json_size(base_args | own_args) > MAX_CUSTOM_ARGS_BYTES:
            add(f"{where}.custom_args", custom_args_too_long())
        if "subject" in item and not isinstance(item["subject"], str):
            add(f"{where}.subject", type_error("string", item["subject"]))
    if total > MAX_RECIPIENTS:
        add(
            "personalizations",
            f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
        )


def check_recipients(item: dict, where: str, seen: set[str], add) -> int:
    """Check one personalization's to/cc/bcc, noting addresses in seen; return how many."""
    count = 0
    for kind in ("to", "cc", "bcc"):
        recipients = item.get(kind)
        if recipients is None and kind != "to":
            continue
        if not isinstance(recipients, list) or not recipients:
            add(f"{where}.{kind}", empty_recipients(kind))
            continue
        count += len(recipients)
        for j, recipient in enumerate(recipients):
            email = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(email, str) or not EMAIL.fullmatch(email):
                add(f"{where}.{kind}.{j}.email", "Does not contain a valid address.")
                continue
            address = email.lower()
            if address in seen:
                add(
                    where,
                    "Each email address in the personalization block should be unique between"
                    f" to, cc, and bcc. We found the first duplicate instance of [{email}]"
                    f" in the {where}.{kind} field.",
                )
            seen.add(address)
    return count


def empty_recipients(kind: str) -> str:
    if kind == "to":
        return (
            "The to array is required for all personalization objects, and must have at"
            " least one email object with a valid email address."
        )
    return (
        f"The {kind} array, when used, must at least have an email parameter with a valid"
        " email address and it may also contain a name parameter."
    )


def custom_args_too_long() -> str:
    return f"The total size of custom arguments must be less than {MAX_CUSTOM_ARGS_BYTES} bytes."


def check_string_map(value, field: str, add) -> None:
    """headers and custom_args: an object whose values are all strings."""
    if value is None:
        return
    if not isinstance(value, dict):
        add(field, type_error("object", value))
        return
    for key, item in value.items():
        if not isinstance(item, str):
            add(f"{field}.{key}", type_error("string", item))


def check_sender(payload: dict, add) -> None:
    sender = payload.get("from")
    email = sender.get("email") if isinstance(sender, dict) else None
    if email is None:
        add(
            "from.email",
            "The from object must be provided for every email send. It is an object that"
            " requires the email parameter, but may also contain a name parameter.",
        )
    elif not isinstance(email, str) or not EMAIL.fullmatch(email):
        add("from.email", "The from email does not contain a valid address.")
    reply_to = payload.get("reply_to")
    if reply_to is not None:
        email = reply_to.get("email") if isinstance(reply_to, dict) else None
        if not isinstance(email, str) or not EMAIL.fullmatch(email):
            add("reply_to.email", "The reply_to email does not contain a valid address.")


def check_body(payload: dict, add) -> None:
    """content unless template_id; subject unless template_id or every personalization has one."""
    template_id = payload.get("template_id")
    if template_id is not None and not is_text(template_id):
        add("template_id", "The template_id must be a valid string.")
    has_template = is_text(template_id)
    content = payload.get("content")
    if content is None:
        if not has_template:
            add(
                "content",
                "Unless a valid template_id is provided, the content parameter is required."
                " There must be at least one defined content block.",
            )
    elif not isinstance(content, list) or not content:
        add("content", "The content must be an array of at least one {type, value} block.")
    else:
        for k, block in enumerate(content):
            block = block if isinstance(block, dict) else {}
            if not is_text(block.get("type")):
                add(
                    f"content.{k}.type",
                    "The content type must be a string at least one character in length.",
                )
            if not is_text(block.get("value")):
                add(
                    f"content.{k}.value",
                    "The content value must be a string at least one character in length.",
                )
    if has_template or is_text(payload.get("subject")):
        return
    items = payload.get("personalizations")
    if (
        isinstance(items, list)
        and items
        and all(isinstance(item, dict) and is_text(item.get("subject")) for item in items)
    ):
        return
    add(
        "subject",
        "The subject is required. You can get around this requirement if you use a template"
        " with a subject defined or if every personalization has a subject defined.",
    )


def check_extras(payload: dict, add) -> None:
    categories = payload.get("categories")
    if categories is not None:
        if not isinstance(categories, list):
            add("categories", type_error("array", categories))
        elif len(categories) > MAX_CATEGORIES:
            add(
                "categories", f"You may not have more than {MAX_CATEGORIES} categories per request."
            )
        else:
            for k, category in enumerate(categories):
                if not isinstance(category, str):
                    add(f"categories.{k}", type_error("string", category))
                elif len(category) > MAX_CATEGORY_LENGTH:
                    add(
                        f"categories.{k}",
                        f"A category cannot have more than {MAX_CATEGORY_LENGTH} characters.",
                    )
    check_string_map(payload.get("headers"), "headers", add)
    custom_args = payload.get("custom_args")
    check_string_map(custom_args, "custom_args", add)
    if isinstance(custom_args, dict) and json_size(custom_args) > MAX_CUSTOM_ARGS_BYTES:
        add("custom_args", custom_args_too_long())


@dataclass(frozen=True)
class Fault:
    kind: str  # "fail", "reject" or "drop"
    status: int = 0
    reset_in: int = 0
    message: str = ""


class Rejection(Exception):
    def __init__(self, status: int, *errors: dict):
        super().__init__(status)
        self.status = status
        self.errors = errors


class FakeSendGrid:
    """SendGrid's Mail Send endpoint on 127.0.0.1; see the module docstring.

    Faults (fail_next, reject_next, drop_next) queue up in the order set and each one
    takes the place of one request that passed every check; requests that SendGrid
    would reject anyway get their honest answer and leave the queue alone.
    """

    def __init__(self, api_key: str = "SG.test-key", *, port: int = 0):
        self.api_key = api_key
        self.delay = 0.0  # seconds to sleep before answering each request
        self.requests: list[dict] = []  # accepted payloads, in arrival order
        self.message_ids: list[str] = []  # the X-Message-Id given to each of them
        self.rejections: list[tuple[int, dict]] = []  # the last non-2xx answers' bodies
        self.dropped_requests: list[dict] = []  # payloads whose connection drop_next cut
        self.received = 0  # every POST, accepted, rejected or dropped
        self.dropped = 0
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The host to give the client (SENDGRID_API_HOST); it appends /v3/mail/send."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeSendGrid:
        if self._server is not None:
            raise RuntimeError("FakeSendGrid is already started")
        self._server = _Server(self, self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"FakeSendGrid:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut the clients' idle keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        self._thread.join(timeout=1)

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def fail_next(self, n: int = 1, status: int = 429, reset_in: int = 1) -> None:
        """The next n good requests get this status, unrecorded: 429 with X-RateLimit-*
        headers (the reset reset_in seconds from the answer), else an errors body."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next needs a 4xx or 5xx status, not {status}")
        self._queue(n, Fault("fail", status=status, reset_in=reset_in))

    def reject_next(self, n: int = 1, status: int = 400, message: str = "Bad Request") -> None:
        """The next n good requests get this 4xx and message in an errors body, unrecorded."""
        if not 400 <= status <= 499:
            raise ValueError(f"reject_next needs a 4xx status, not {status}")
        self._queue(n, Fault("reject", status=status, message=message))

    def drop_next(self, n: int = 1) -> None:
        """The next n good requests are read, then their connection closes unanswered."""
        self._queue(n, Fault("drop"))

    def recipients(self) -> list[str]:
        """Every accepted `to` address, lower-cased, in the order received."""
        with self._lock:
            payloads = list(self.requests)
        return [
            recipient["email"].lower()
            for payload in payloads
            for personalization in payload["personalizations"]
            for recipient in personalization["to"]
        ]

    def accepted_count(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        """Forget everything recorded and counted, pending faults and the delay."""
        with self._lock:
            self.requests.clear()
            self.message_ids.clear()
            self.rejections.clear()
            self.dropped_requests.clear()
            self._faults.clear()
            self.received = 0
            self.dropped = 0
            self.delay = 0.0

    def _queue(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def _take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _count_received(self) -> None:
        with self._lock:
            self.received += 1

    def _accept(self, payload: dict) -> str:
        message_id = secrets.token_urlsafe(16)
        with self._lock:
            self.requests.append(payload)
            self.message_ids.append(message_id)
        return message_id

    def _note_drop(self, payload: dict) -> None:
        with self._lock:
            self.dropped += 1
            self.dropped_requests.append(payload)

    def _note_rejection(self, status: int, body: dict) -> None:
        with self._lock:
            self.rejections.append((status, body))
            del self.rejections[:-KEPT_REJECTIONS]

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for clients to hang up
    request_queue_size = 128  # 16 connections at once must not overflow the backlog

    def __init__(self, fake: FakeSendGrid, port: int):
        self.fake = fake
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        # A client that timed out or hung up mid-answer is expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid"
    sys_version = ""
    wbufsize = -1  # headers and body leave in one write, flushed after each request
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def do_POST(self) -> None:
        fake = self.server.fake
        fake._count_received()
        try:
            payload = self._checked_payload(fake)
        except Rejection as rejection:
            self._reject(rejection.status, *rejection.errors)
            return
        fault = fake._take_fault()
        if fault is None:
            self._answer(202, headers={"X-Message-Id": fake._accept(payload)})
        elif fault.kind == "drop":
            fake._note_drop(payload)
            self.close_connection = True
        elif fault.kind == "reject":
            self._reject(fault.status, error(fault.message))
        elif fault.status == 429:
            limit = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + fault.reset_in),
            }
            self._reject(429, error("too many requests"), headers=limit)
        else:
            self._reject(fault.status, error(HTTPStatus(fault.status).phrase.lower()))

    def _checked_payload(self, fake: FakeSendGrid) -> dict:
        """Read the request and return its payload, or raise the Rejection SendGrid gives."""
        try:
            length = int(self.headers.get("Content-Length", 0))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise Rejection(400, error("Invalid Content-Length"))
        body = self.rfile.read(length)
        if fake.delay > 0:
            time.sleep(fake.delay)
        if self.path.partition("?")[0] != MAIL_SEND_PATH:
            raise Rejection(404, error("not found"))
        authorization = self.headers.get("Authorization")
        if authorization is None:
            raise Rejection(401, error("authorization required"))
        if authorization != f"Bearer {fake.api_key}":
            raise Rejection(
                401, error("The provided authorization grant is invalid, expired, or revoked")
            )
        content_type = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            raise Rejection(400, error("Content-Type should be application/json."))
        try:
            payload = json.loads(body)
        except ValueError:
            raise Rejection(400, error("Bad Request: the body is not valid JSON.")) from None
        if not isinstance(payload, dict):
            raise Rejection(400, error(type_error("object", payload)))
        errors = mail_errors(payload)
        if errors:
            raise Rejection(400, *errors)
        return payload

    def _reject(self, status: int, *errors: dict, headers: dict[str, str] | None = None) -> None:
        self.server.fake._note_rejection(status, {"errors": list(errors)})
        self._answer(status, errors_body(*errors), headers)

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
