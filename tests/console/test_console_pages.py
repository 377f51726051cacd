"""The console's templates: every page escapes every value, and every template renders under
StrictUndefined. Also the web layer's library pieces: the signed cookies (itsdangerous) and the form
parser behind the 413-before-read guarantee. No processes.

The escaping oracle is independent of the template engine: the page is parsed with the standard
library's HTML parser, and a hostile value must come back as text (or as the same attribute
value), never as an element or an attribute of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from starlette.requests import Request
from starlette.types import Message

from console import auth, comparisons, pages
from console.app import MAX_FORM_BYTES, BodyTooLarge, form_fields
from console.templating import ENV, View
from fraud_core.review_cases import Case, new_case, recent_entry

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "\"'><img src=x onerror=1>"
HOSTILE = (SCRIPT, BREAKOUT)
UNQUOTED = " onmouseover=1 x"  # breaks out of an attribute written without quotes
T0 = 1_700_000_000_000
# Elements the console's own templates use; a hostile value that became markup adds one (img, a
# second script) or an attribute (onerror).
OWN_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "b", "a", "span", "form", "input",
    "button", "div", "script", "main", "h1", "h2", "p", "label", "table", "tr", "th", "td", "ul",
    "li", "section", "code",
}  # fmt: skip


class Parsed(HTMLParser):
    """Tags, attributes and text of a page, as a browser's tokenizer would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_script = False
        self.scripts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)

    def attribute_values(self) -> Iterator[str]:
        for _, attrs in self.tags:
            yield from (v for v in attrs.values() if v is not None)


def _hostile_case(status: str, n: int) -> Case:
    hostile = HOSTILE[n % 2]
    record = {
        "event_id": f"e-{n}{hostile}{UNQUOTED}",
        "user_id": f"u{hostile}",
        "card_id": f"card{hostile}",
        "amount_minor": 150_000,
        "currency": "JPY",
        "merchant_id": f"m{hostile}",
        "country": hostile,
        "device_id": f"d{hostile}",
        "score": 0.9,
        "threshold": 0.5,
        "model_version": f"model{hostile}",
        "reasons": [f"reason {SCRIPT}", f"reason {BREAKOUT}"],
        "features": {f"feature{hostile}": 1.0, "txn_count_1m": 3.0},
        "rules_fired": [f"rule{SCRIPT}", f"rule{BREAKOUT}"],
        "rules_version": f"rules{hostile}",
        "event_time": T0,
        "decided_at": T0,
        "degraded": True,
    }
    earlier = {**record, "event_id": "e-0", "merchant_id": SCRIPT, "country": BREAKOUT, "action": SCRIPT}
    raw = new_case(record, T0 + 10, [recent_entry(earlier)])
    case = Case.from_hash({k.encode(): v.encode() for k, v in raw.items()})
    if status == "open":
        return case
    return dataclasses.replace(
        case, status=status, verdict=SCRIPT, actor=f"analyst:{BREAKOUT}", resolved_at=T0 + 20, note=SCRIPT
    )


def _hostile_comparison(model_dir: Path) -> dict[str, Any]:
    path = comparisons.comparison_path(model_dir, "challenger")
    path.parent.mkdir(parents=True)
    metrics = {"cost_eur": 1.0, "average_precision": 0.5}
    doc = {
        "challenger": SCRIPT,
        "window": {"from": BREAKOUT, "to": SCRIPT},
        "held_out": {"from": SCRIPT, "to": BREAKOUT, "what": SCRIPT},
        "models": {SCRIPT: {"role": BREAKOUT, "metrics": metrics}, BREAKOUT: {"role": SCRIPT, "metrics": {}}},
        "rule": SCRIPT,
        "promoted": False,
        "now_live": BREAKOUT,
        "shadow": SCRIPT,
    }
    path.write_text(json.dumps(doc))
    (path.parent / f"{BREAKOUT}.json").write_text("{")  # an unreadable file: its name is shown
    return comparisons.comparisons_context(model_dir)


def hostile_views(tmp_path: Path) -> dict[str, View]:
    """Every page, with a hostile value in every field a user, a payment or a file can set."""
    open_case, resolved = _hostile_case("open", 0), _hostile_case("resolved", 1)
    user, csrf = f"alice{BREAKOUT}", f"tok{SCRIPT}{UNQUOTED}"
    found = _hostile_comparison(tmp_path)
    return {
        "login": pages.login_page(csrf, error=SCRIPT),
        "message": pages.message_page(SCRIPT, BREAKOUT, user, csrf),
        "message, logged out": pages.message_page(BREAKOUT, SCRIPT),
        "queue": pages.queue_page([open_case], [resolved], {"open": 1, "resolved": 1}, 900, user, csrf),
        "open case": pages.case_page(open_case, True, user, csrf, message=SCRIPT, error=BREAKOUT),
        "resolved case": pages.case_page(resolved, False, user, csrf),
        "comparisons": pages.comparisons_page(found, user, csrf),
        "comparisons body": View("comparisons_body.html", found),
    }


def test_every_template_has_a_hostile_sample(tmp_path: Path) -> None:
    """A new template must join hostile_views (base.html is the frame of all the others)."""
    rendered = {view.template for view in hostile_views(tmp_path).values()} | {"base.html"}
    assert rendered == set(ENV.list_templates())


PAGES = (
    "login", "message", "message, logged out", "queue", "open case", "resolved case", "comparisons",
    "comparisons body",
)  # fmt: skip


def test_every_page_is_checked(tmp_path: Path) -> None:
    assert set(hostile_views(tmp_path).keys()) == set(PAGES)


@pytest.mark.parametrize("name", PAGES)
def test_hostile_values_are_shown_as_text_never_as_markup(name: str, tmp_path: Path) -> None:
    html = hostile_views(tmp_path)[name].render()
    assert SCRIPT not in html and "<img" not in html and "onerror=1>" not in html
    page = Parsed(html)
    assert {tag for tag, _ in page.tags} <= OWN_TAGS
    assert [tag for tag, _ in page.tags].count("script") <= 1  # the health strip's own, when logged in
    assert not any(tag == "img" for tag, _ in page.tags)
    assert not any(attr.startswith("on") for _, attrs in page.tags for attr in attrs)
    assert all("alert" not in s for s in page.scripts)
    text = "".join(page.text)
    shown = [value for value in (*page.attribute_values(), text) if SCRIPT in value or BREAKOUT in value]
    assert shown, "the hostile values were dropped, not escaped"


def test_each_field_of_a_case_is_shown_escaped(tmp_path: Path) -> None:
    page = Parsed(hostile_views(tmp_path)["open case"].render())
    text = "".join(page.text)
    for shown in (f"m{SCRIPT}", f"u{SCRIPT}", f"reason {SCRIPT}", f"reason {BREAKOUT}", f"feature{SCRIPT}"):
        assert shown in text
    assert f"rule{SCRIPT}, rule{BREAKOUT}" in text
    assert "(on review hold)" in text and f"card{SCRIPT}" not in text  # masked, not printed
    csrf_values = [a["value"] for t, a in page.tags if t == "input" and a.get("name") == "csrf"]
    assert csrf_values == [f"tok{SCRIPT}{UNQUOTED}"] * 3  # the attribute holds the value whole: no break-out
    actions = [a["action"] for t, a in page.tags if t == "form" and a["action"] != "/logout"]
    assert len(actions) == 2 and all(a is not None and "<" not in a and '"' not in a for a in actions)


# Variables a page passes that its template reads only on a branch this sample does not take.
UNUSED_ON_THIS_BRANCH = {
    ("message, logged out", "csrf"),  # the log-out form is shown only to a user
    ("comparisons", "folder"),  # named only when there is no comparison
    ("comparisons body", "folder"),
}


def test_every_template_renders_under_strict_undefined(tmp_path: Path) -> None:
    for name, view in hostile_views(tmp_path).items():
        assert view.render().rstrip().endswith("</html>") or view.template == "comparisons_body.html"
        for missing in view.context:
            if (name, missing) in UNUSED_ON_THIS_BRANCH:
                continue
            context = {k: v for k, v in view.context.items() if k != missing}
            with pytest.raises(UndefinedError):
                View(view.template, context).render()


def test_the_environment_escapes_and_is_strict() -> None:
    assert ENV.from_string("{{ v }}").render(v=SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert ENV.get_template("message.html").environment.autoescape is not False
    with pytest.raises(UndefinedError):
        ENV.from_string("{{ nothing }}").render()


def test_a_session_cookie_is_signed_and_one_kind_is_not_the_other() -> None:
    key = b"k" * 32
    anonymous = auth.Session.anonymous(now_s=1000, ttl_s=60)
    cookie = auth.sign_session(anonymous, key)
    signed_id = auth.sign_session_id("some-session-id", key)
    assert auth.read_session_id(signed_id, key) == "some-session-id"
    assert auth.read_session_id(signed_id, b"x" * 32) is None  # another key
    assert auth.read_session_id(cookie, key) is None  # an anonymous cookie names no session
    assert auth.read_session(signed_id, key, 1010) is None  # and a session id is no anonymous session
    assert auth.read_session_id("some-session-id", key) is None  # an unsigned id reaches no store
    payload, _, mac = signed_id.rpartition(".")
    assert auth.read_session_id(f"{payload}x.{mac}", key) is None


def _request(body_chunks: list[bytes], headers: dict[str, str]) -> tuple[Request, list[int]]:
    """A request whose receive() hands out ``body_chunks``; the list returned counts the calls."""
    calls: list[int] = []

    async def receive() -> Message:
        calls.append(1)
        i = len(calls) - 1
        return {"type": "http.request", "body": body_chunks[i], "more_body": i + 1 < len(body_chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), calls


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_form_fields_are_parsed_by_the_framework() -> None:
    body = b"csrf=a%2Bb&username=%3Cx%3E+y&verdict=CLEAR"
    request, _ = _request([body[:10], body[10:]], FORM)
    assert asyncio.run(form_fields(request)) == {"csrf": "a+b", "username": "<x> y", "verdict": "CLEAR"}


def test_a_declared_oversized_body_is_refused_before_a_byte_is_read() -> None:
    request, calls = _request([b"a" * 10], FORM | {"content-length": str(MAX_FORM_BYTES + 1)})
    with pytest.raises(BodyTooLarge, match="content-length"):
        asyncio.run(form_fields(request))
    assert calls == []
    request, calls = _request([b"a"], FORM | {"content-length": "12abc"})
    with pytest.raises(BodyTooLarge):
        asyncio.run(form_fields(request))
    assert calls == []


def test_an_undeclared_body_is_refused_once_it_passes_the_limit() -> None:
    chunks = [b"a" * 1000] * 100  # 100 kB offered, chunked
    request, calls = _request(chunks, FORM)
    with pytest.raises(BodyTooLarge, match="over"):
        asyncio.run(form_fields(request))
    assert len(calls) == MAX_FORM_BYTES // 1000 + 1  # stopped at the first chunk past the limit


def test_a_route_answers_with_the_same_escaped_page(tmp_path: Path) -> None:
    """Routes answer through Starlette's Jinja2Templates on the same environment: same bytes."""
    view = hostile_views(tmp_path)["open case"]
    request = Request({"type": "http", "method": "GET", "path": "/cases/x", "headers": []})
    response = view.response(request, 409)
    assert response.status_code == 409 and response.headers["content-type"].startswith("text/html")
    assert bytes(response.body).decode() == view.render()
