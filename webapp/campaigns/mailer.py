"""The Mailer interface and its two backends: SendGrid, and the outbox.

A mailer takes v3 Mail Send payloads (what SendGrid's API receives, built by
webapp.campaigns.messages) and says, per payload, what became of it:

- ``sent``: SendGrid answered 202 (or the outbox stored it);
- ``failed``: SendGrid refused it with a 4xx other than 429; its error is kept;
- ``retry``: SendGrid surely did not take it (429 or 5xx after every retry, or no
  connection could be made): the recipients go back to the queue;
- ``halt``: SendGrid refused the key or the account (401, 403): back to the queue, and the
  campaign pauses, since every other request would be refused too;
- ``unknown``: a timeout or a dropped connection, after which nobody can tell whether SendGrid
  took it. Never retried automatically: the owner decides.

The SendGrid backend uses the real ``sendgrid`` library. Its HTTP client opens a new
connection per request; ours is the same client with its one request hook
(``_make_request``) sending over a keep-alive connection per thread instead, so a send of
100,000 messages reuses a few connections rather than opening 100,000.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import python_http_client
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError, handle_error
from sendgrid import SendGridAPIClient

from webapp.campaigns.render import html_to_text
from webapp.extensions import db
from webapp.models import OutboxMessage


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | failed | retry | halt | unknown
    message_id: str | None = None
    error: str | None = None


class Mailer:
    name = "mailer"
    concurrency = 1
    threaded = False  # may send from another thread than the sender's (not the outbox)

    def encode(self, payload: dict) -> object:
        """The payload as this mailer sends it; done by the sender's own thread."""
        return payload

    def send(self, payload) -> Outcome:
        raise NotImplementedError

    def send_all(self, payloads: Iterable[dict]) -> list[Outcome]:
        return [self.send(payload) for payload in payloads]

    def close(self) -> None:
        pass


# --- SendGrid ----------------------------------------------------------------------------


class NotSent(Exception):
    """No connection to SendGrid could be made: nothing was sent."""


class _Answer:
    """What python_http_client's Response reads from urllib's answer."""

    def __init__(self, status: int, body: bytes, headers):
        self.status, self.body, self.headers = status, body, headers

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self.body

    def info(self):
        return self.headers


class _Connections(threading.local):
    """One keep-alive connection per sending thread."""

    IDLE_SECONDS = 4.0  # reconnect rather than write into a connection the server may close

    def __init__(self, host: str, timeout: float):
        parts = urlsplit(host)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None
        self.used_at = 0.0

    def get(self) -> http.client.HTTPConnection:
        if self.connection is not None and time.monotonic() - self.used_at > self.IDLE_SECONDS:
            self.drop()
        if self.connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.connection = kind(self.netloc, timeout=self.timeout)
        return self.connection

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class KeepAliveClient(python_http_client.Client):
    """python_http_client's client, its requests sent over a kept-alive connection."""

    def __init__(self, *args, connections: _Connections, **kwargs):
        super().__init__(*args, **kwargs)
        self._connections = connections

    def _build_client(self, name=None):
        url_path = self._url_path + [name] if name else self._url_path
        return KeepAliveClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
            connections=self._connections,
        )

    def __getattr__(self, name):
        if name not in self.methods:
            return super().__getattr__(name)
        method = name.upper()

        def http_request(request_body=None, query_params=None, request_headers=None, **_):
            """The library's request, without the urllib opener it builds on every call (a
            third of a request's time) that the keep-alive connection makes useless."""
            headers = {**self.request_headers, **(request_headers or {})}
            data = None
            if request_body is not None:
                headers.setdefault("Content-Type", "application/json")
                data = (
                    request_body
                    if isinstance(request_body, bytes)  # encoded already (SendGridMailer.encode)
                    else json.dumps(request_body).encode()
                )
            request = urllib.request.Request(
                self._build_url(query_params), data=data, headers=headers, method=method
            )
            return Response(self._make_request(None, request))

        return http_request

    def _make_request(self, opener, request, timeout=None):
        connections = self._connections
        connection = connections.get()
        if connection.sock is None:
            try:
                connection.connect()
            except OSError as exc:  # DNS, refused, unreachable, connect timeout, TLS
                connections.drop()
                raise NotSent(f"{type(exc).__name__}: {exc}") from exc
        try:
            connection.request(
                request.get_method(),
                request.selector,
                body=request.data,
                headers=dict(request.header_items()),
            )
            answer = connection.getresponse()
            body = answer.read()
        except BaseException:
            connections.drop()
            raise
        connections.used_at = time.monotonic()
        if answer.will_close:
            connections.drop()
        if answer.status >= 400:
            raise handle_error(
                urllib.error.HTTPError(
                    request.full_url, answer.status, answer.reason, answer.headers, io.BytesIO(body)
                )
            )
        return _Answer(answer.status, body, answer.headers)


def sendgrid_error(exc: HTTPError) -> str:
    """SendGrid's own words for a refused request."""
    try:
        errors = json.loads(exc.body or b"{}").get("errors") or []
        messages = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
        ]
    except (ValueError, AttributeError):
        messages = []
    return f"SendGrid {exc.status_code}: " + ("; ".join(messages) or str(exc.reason))


class SendGridMailer(Mailer):
    """Mail through SendGrid's v3 API, ``concurrency`` requests at a time."""

    name = "sendgrid"
    threaded = True

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api_key, self.host = api_key, host.rstrip("/")
        self.concurrency = max(1, concurrency)
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_wait, self.sleep = backoff, max_wait, sleep
        self._connections = _Connections(self.host, timeout)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config) -> SendGridMailer:
        return cls(
            config["SENDGRID_API_KEY"],
            config["SENDGRID_API_HOST"],
            concurrency=config["SENDGRID_CONCURRENCY"],
            timeout=config["SENDGRID_TIMEOUT_SECONDS"],
            max_retries=config["SENDGRID_MAX_RETRIES"],
        )

    def _endpoint(self):
        """This thread's client for /v3/mail/send (what SendGridAPIClient.send posts to),
        made once: the library builds a client object per path segment on every call."""
        endpoint = getattr(self._local, "endpoint", None)
        if endpoint is None:
            client = SendGridAPIClient(api_key=self.api_key, host=self.host)
            client.client = KeepAliveClient(
                host=self.host,
                request_headers=client._default_headers,
                version=3,
                timeout=self.timeout,
                connections=self._connections,
            )
            endpoint = self._local.endpoint = client.client.mail.send
        return endpoint

    def _wait(self, exc: HTTPError, attempt: int) -> float:
        """Until SendGrid's rate limit resets (X-RateLimit-Reset, epoch seconds), else an
        exponential backoff."""
        reset = (exc.headers or {}).get("X-RateLimit-Reset") if exc.headers else None
        if exc.status_code == 429 and reset:
            try:
                return min(self.max_wait, max(0.0, float(reset) - time.time()) + 0.05)
            except ValueError:
                pass
        return min(self.max_wait, self.backoff * 2**attempt)

    def encode(self, payload: dict) -> bytes:
        """Compact UTF-8 JSON, encoded by the sender's thread (an encoder holds the
        interpreter's lock for the whole of a 1000-personalization request, which would
        stall the sender if the sending thread did it). orjson takes a tenth of json.dumps's
        time there, which was a sixth of a template send."""
        return orjson.dumps(payload)

    def send(self, payload: dict | bytes) -> Outcome:
        endpoint = self._endpoint()
        for attempt in range(self.max_retries + 1):
            try:
                response = endpoint.post(request_body=payload)
            except HTTPError as exc:
                if exc.status_code == 429 or exc.status_code >= 500:
                    if attempt < self.max_retries:
                        self.sleep(self._wait(exc, attempt))
                        continue
                    return Outcome("retry", error=sendgrid_error(exc))
                if exc.status_code in (401, 403):  # the key or the account, not this mail
                    return Outcome("halt", error=sendgrid_error(exc))
                return Outcome("failed", error=sendgrid_error(exc))
            except NotSent as exc:  # never reached SendGrid: surely not taken
                if attempt < self.max_retries:
                    self.sleep(min(self.max_wait, self.backoff * 2**attempt))
                    continue
                return Outcome("retry", error=f"SendGrid unreachable: {exc}")
            except (OSError, http.client.HTTPException) as exc:  # timeouts, drops: ambiguous
                return Outcome("unknown", error=f"{type(exc).__name__}: {exc}")
            return Outcome("sent", message_id=response.headers.get("X-Message-Id"))
        raise AssertionError("unreachable")

    def send_all(self, payloads: Iterable[dict]) -> list[Outcome]:
        """Each request handed to a sending thread as soon as it is built."""
        if self.concurrency == 1:
            return [self.send(payload) for payload in payloads]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sendgrid")
        futures = []
        try:
            for payload in payloads:
                futures.append(self._pool.submit(self.send, payload))
        finally:  # a request already handed over is waited for, even if building failed
            outcomes = [future.result() for future in futures]
        return outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# --- the outbox --------------------------------------------------------------------------


class OutboxMailer(Mailer):
    """Keeps each message for the owner to read in the browser (no SENDGRID_API_KEY).

    The rows join the sender's transaction, so they commit with the ledger's "sent"."""

    name = "outbox"

    def __init__(self, test: bool = False):
        self.test = test

    def send(self, payload: dict) -> Outcome:
        for message in outbox_messages(payload, test=self.test):
            db.session.add(message)
        return Outcome("sent", message_id=None)


def outbox_messages(payload: dict, test: bool = False) -> Iterable[OutboxMessage]:
    contents = {part["type"]: part["value"] for part in payload.get("content") or []}
    shared = {k: v for k, v in payload.items() if k not in ("personalizations", "content")}
    campaign_id = (payload.get("custom_args") or {}).get("campaign_id")
    for person in payload["personalizations"]:
        recipient_id = (person.get("custom_args") or {}).get("recipient_id")
        data = person.get("dynamic_template_data")
        html = contents.get("text/html") or _template_preview(payload.get("template_id"), data)
        yield OutboxMessage(
            campaign_id=int(campaign_id) if campaign_id else None,
            recipient_id=int(recipient_id) if recipient_id else None,
            to_email=person["to"][0]["email"],
            from_email=payload["from"]["email"],
            subject=person.get("subject") or payload.get("subject") or "",
            html=html,
            text=contents.get("text/plain") or html_to_text(html),
            payload={**shared, "personalization": person},
            test=test,
        )


def _template_preview(template_id: str | None, data: dict | None) -> str:
    """SendGrid renders a dynamic template itself; the outbox shows the data it would get."""
    from markupsafe import escape

    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(json.dumps(v))}</td></tr>"
        for k, v in (data or {}).items()
    )
    return (
        f"<p>SendGrid dynamic template <code>{escape(template_id or '')}</code>, "
        f"with this data:</p><table>{rows}</table>"
    )


def mailer_for(config, test: bool = False) -> Mailer:
    """SendGrid when an API key is configured, else the outbox. A test message goes out
    inside the owner's request: no retries, no backoff to wait through."""
    if config["SENDGRID_API_KEY"]:
        mailer = SendGridMailer.from_config(config)
        if test:
            mailer.max_retries = 0
        return mailer
    return OutboxMailer(test=test)
