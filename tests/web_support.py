"""A WSGI test client from the standard library, and the sagas the dashboard tests show."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

from saga import Saga, SagaError

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode()

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, "no CSRF field on the page"
        return found[1]


class Client:
    """Requests to a WSGI app, keeping its cookies like a browser (one host)."""

    def __init__(self, app: WsgiApp, script_name: str = "") -> None:
        self.app = app
        self.script_name = script_name
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, query: str = "",
                form: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                environ: dict[str, Any] | None = None) -> Reply:
        if "?" in path:
            path, query = path.split("?", 1)
        body = urlencode(form or {}).encode()
        env: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
            "SCRIPT_NAME": self.script_name, "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "localhost",
            "CONTENT_TYPE": "application/x-www-form-urlencoded"}
        if self.cookies:
            env["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for key, value in (headers or {}).items():
            env["HTTP_" + key.upper().replace("-", "_")] = value
        env.update(environ or {})
        setup_testing_defaults(env)
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            seen["status"], seen["headers"] = status, headers

        chunks = b"".join(self.app(env, start_response))
        set_cookies = [v for k, v in seen["headers"] if k.lower() == "set-cookie"]
        for line in set_cookies:
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return Reply(int(seen["status"].split()[0]),
                     {k.lower(): v for k, v in seen["headers"]}, chunks, set_cookies)

    def get(self, path: str, **options: Any) -> Reply:
        return self.request("GET", path, **options)

    def post(self, path: str, form: dict[str, str], **options: Any) -> Reply:
        return self.request("POST", path, form=form, **options)


HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>',
           "'><svg onload=alert(3)>"]


def shop(saga: Saga) -> Saga:
    """Steps of a small shop: reserve, charge (fails when input says so), ship."""

    @saga.step
    def reserve(input: Any) -> object:
        return charge(input)

    @saga.step
    def charge(input: Any) -> object:
        if input.get("decline"):
            raise SagaError(f"card declined: {input.get('note', '')}")
        return ship(input)

    @saga.step
    def ship(input: Any) -> object:
        return {"shipped": True, "note": input.get("note")}

    return saga
