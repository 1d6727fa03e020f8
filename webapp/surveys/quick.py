"""The usual answer, taken before Flask's request handling (a WSGI middleware).

`POST /embed/r/<token>/answers` is the request shoppers send most, and nearly every one is
the first answer to the question its response waits for. For that request Flask's own
handling (the request context, URL matching, session, before and after hooks) cost as much
again as storing the answer, so `QuickAnswers` answers it below Flask: it counts the rate
limit, checks the token and the origin as the view does, and stores the step with
`responses.QuickStep`. Whatever it is not sure of (another path or method, a query string,
a body that is not small JSON, a bad token, a retry, an answer out of order, an email given
with consent, an error) it hands to Flask untouched, with the body it read put back and the
rate limit already counted, and the view (`embed.answers`) then decides as it always has,
errors included.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

from flask import Flask
from werkzeug.wrappers import Request

from webapp.extensions import db, limiter
from webapp.surveys.public import (
    JSON_MIMETYPES,
    TOKEN_MAX,
    origin_allowed_by,
    parse_json,
    public_id_for,
)
from webapp.surveys.responses import QuickStep

_PREFIX, _SUFFIX = "/embed/r/", "/answers"


class QuickAnswers:
    """Wraps the app's WSGI callable: the usual answer here, every other request to Flask."""

    def __init__(self, app: Flask) -> None:
        from webapp.surveys.embed import answers  # the view whose rate limit this counts

        self.app = app
        self.wsgi_app = app.wsgi_app
        self.view = answers

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and path.startswith(_PREFIX)
            and path.endswith(_SUFFIX)
            and not environ.get("QUERY_STRING")  # the app checks query strings for NULs
            and not self.app.config["SERVER_NAME"]  # then Flask would match the host too
        ):
            reply = self.answer(environ, path[len(_PREFIX) : -len(_SUFFIX)])
            if reply is not None:
                headers, body = reply
                start_response("200 OK", headers)
                return [body]
        return self.wsgi_app(environ, start_response)

    def answer(self, environ: dict, token: str) -> tuple[list[tuple[str, str]], bytes] | None:
        """The reply's headers and body, the step stored; None (nothing stored) for Flask."""
        if not token or "/" in token or len(token) > TOKEN_MAX:
            return None
        request = Request(environ, populate_request=False)
        with self.app.app_context():
            try:
                return self._answer(request, token)
            except Exception:  # the view answers it, with the app's own error handling
                self.app.logger.exception("The quick way failed: the view answers instead")
                return None

    def _answer(self, request: Request, token: str):
        config = self.app.config
        if config["RATELIMIT_ENABLED"] and not limiter.admits(
            self.view, request.environ, request.remote_addr or "127.0.0.1"
        ):
            return None  # the view counts it again, finds it over the limit: a 429
        length = request.content_length
        if (
            request.mimetype not in JSON_MIMETYPES
            or length is None
            or length > config["SURVEY_MAX_BODY_BYTES"]
        ):
            return None
        raw = request.environ["wsgi.input"].read(length)
        request.environ["wsgi.input"] = io.BytesIO(raw)  # for the view, if it comes to that
        public_id = public_id_for(token)
        if len(raw) != length or public_id is None:
            return None
        try:
            data = parse_json(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.keys() != {"question", "answer"}:
            return None
        origin = request.headers.get("Origin")
        with QuickStep(db.engine) as quick:
            waiting = quick.waiting(public_id)
            if waiting is None or not origin_allowed_by(
                waiting.allowed_origins, origin, request.host_url
            ):
                return None
            step = quick.record(waiting, data["question"], data["answer"])
        if step is None:
            return None
        reply = {"next": step.next_question, "completed": step.completed}
        body = f"{self.app.json.dumps(reply)}\n".encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers.append(("Vary", "Origin"))
        if origin:
            headers.append(("Access-Control-Allow-Origin", origin))
        return headers, body
