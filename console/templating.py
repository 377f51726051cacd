"""The console's one Jinja2 environment: every page is a template under ``console/templates/``.

Autoescape is on for every ``.html`` template, so a value from a case, a decision or a form is
escaped unless a template says otherwise (none does): a template that forgets ``|e`` cannot open
an XSS hole in the analyst UI. ``StrictUndefined`` makes a misspelt or missing variable an error
when the page renders, not an empty cell that looks like data. Routes answer through
:data:`TEMPLATES` (Starlette's ``Jinja2Templates`` on this environment); tests and the comparisons
body render a :class:`View` to text with the same environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from fraud_core.cards import mask_card
from fraud_core.reference import CURRENCIES


def when(ms: int) -> str:
    """An epoch-millisecond instant as UTC text ("-" for none)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(amount_minor: int, currency: str, eur: float | None = None) -> str:
    """An amount in its currency's units, with its EUR value when the currency is another."""
    exponent = CURRENCIES[currency][0] if currency in CURRENCIES else 2
    shown = f"{amount_minor / 10**exponent:,.{exponent}f} {currency}"
    if eur is None:
        return shown
    return shown if currency == "EUR" else f"{shown} ({eur:,.2f} EUR)"


ENV = Environment(
    loader=PackageLoader("console", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)
ENV.filters.update(when=when, mask_card=mask_card)
ENV.globals.update(money=money)
TEMPLATES = Jinja2Templates(env=ENV)


@dataclass(frozen=True, slots=True)
class View:
    """A page to render: its template and the values it shows (raw: the template escapes them)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """The page as text (what the response body carries)."""
        return ENV.get_template(self.template).render(self.context)

    def response(self, request: Request, status_code: int = 200) -> Response:
        """The page as the HTTP response to ``request``."""
        return TEMPLATES.TemplateResponse(request, self.template, dict(self.context), status_code=status_code)
