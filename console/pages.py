"""The console's HTML, server-rendered from plain functions (every value escaped; no build step,
nothing fetched from the network: the page's style and its small script are inline)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from console.cases import Case
from fraud_core.cards import mask_card
from fraud_core.feature_catalog import FEATURE_WORDS
from fraud_core.reference import CURRENCIES

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2433}
header{background:#1d2433;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff} main{padding:1em 1.5em}
#health{display:flex;gap:1.2em;flex-wrap:wrap;background:#e8ecf3;padding:.5em 1.2em;font-size:.9em}
#health b{font-variant-numeric:tabular-nums}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #dde;padding:.35em .7em;text-align:left;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}
.box{background:#fff;padding:.8em 1.2em;margin:.5em 0 1em;border-radius:6px}
button{font-size:1em;padding:.5em 1.2em;border-radius:5px;border:0;cursor:pointer}
.confirm{background:#b3261e;color:#fff}.clear{background:#1e6b3a;color:#fff}
.err{background:#fde2e1;padding:.6em 1em;border-radius:5px}.ok{background:#dff3e4;padding:.6em 1em}
"""

_SCRIPT = """
async function refresh(){
  try{const r=await fetch('/api/health');if(!r.ok)return;const h=await r.json();
  const f=(v,d)=>v===null?'-':v.toFixed(d);
  document.getElementById('h-eps').textContent=f(h.events_per_s,1);
  document.getElementById('h-p50').textContent=f(h.p50_ms,1);
  document.getElementById('h-p99').textContent=f(h.p99_ms,1);
  document.getElementById('h-dec').textContent=Object.entries(h.decisions).map(([k,v])=>k+' '+v).join(', ')||'-';
  document.getElementById('h-dlq').textContent=h.dlq;document.getElementById('h-deg').textContent=h.degraded;
  document.getElementById('h-up').textContent=Object.values(h.up).filter(x=>x).length+'/'+Object.keys(h.up).length;
  }catch(e){}
}
refresh();setInterval(refresh,2000);
"""


def when(ms: int) -> str:
    """An epoch-millisecond instant as UTC text."""
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


def page(title: str, body: str, user: str | None = None, csrf: str = "") -> str:
    """The frame of every page: header, the live health strip (when logged in), the body."""
    nav = ""
    strip = ""
    if user:
        nav = (
            f'<a href="/">Queue</a><a href="/models">Models</a><span>signed in as <b id="who">{escape(user)}</b></span>'
            f'<form method="post" action="/logout" style="margin:0"><input type="hidden" name="csrf" '
            f'value="{escape(csrf)}"><button>Log out</button></form>'
        )
        strip = (
            '<div id="health">Pipeline: <span>events/s <b id="h-eps">-</b></span>'
            '<span>scoring p50 <b id="h-p50">-</b> ms, p99 <b id="h-p99">-</b> ms</span>'
            '<span>decisions <b id="h-dec">-</b></span><span>DLQ <b id="h-dlq">-</b></span>'
            '<span>degraded <b id="h-deg">-</b></span><span>components up <b id="h-up">-</b></span></div>'
            f"<script>{_SCRIPT}</script>"
        )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - fraud review'
        f"</title><style>{_STYLE}</style></head><body><header><b>Fraud review console</b>{nav}</header>"
        f"{strip}<main>{body}</main></body></html>"
    )


def login_page(csrf: str, error: str = "") -> str:
    problem = f'<p class="err">{escape(error)}</p>' if error else ""
    body = (
        f'<h1>Log in</h1>{problem}<form method="post" action="/login" class="box">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<p><label>Analyst <input name="username" id="username" autocomplete="username"></label></p>'
        '<p><label>Password <input name="password" id="password" type="password" '
        'autocomplete="current-password"></label></p><button id="login">Log in</button></form>'
    )
    return page("Log in", body)


def _reason(case: Case) -> str:
    return escape(case.reasons[0]) if case.reasons else "-"


def queue_page(
    open_cases: list[Case],
    resolved: list[Case],
    counts: dict[str, int],
    timeout_s: float,
    user: str,
    csrf: str,
) -> str:
    """The open cases in queue order, and the latest resolved ones."""
    rows = "".join(
        f'<tr class="case-row"><td class="num">{i}</td><td class="num">{c.score:.3f}</td>'
        f'<td class="num">{escape(money(c.amount_minor, c.currency, c.amount_eur))}</td>'
        f"<td>{escape(c.user_id)}</td><td>{escape(c.merchant_id)} ({escape(c.country)})</td>"
        f"<td>{_reason(c)}</td><td>{escape(', '.join(c.rules_fired) or '-')}</td><td>{when(c.opened_at)}</td>"
        f'<td><a class="open-case" href="/cases/{escape(c.event_id)}">Review</a></td></tr>'
        for i, c in enumerate(open_cases, start=1)
    )
    done = "".join(
        f"<tr><td>{escape(c.event_id)}</td><td>{escape(c.verdict)}</td><td>{escape(c.actor)}</td>"
        f"<td>{when(c.resolved_at)}</td><td>{escape(c.note)}</td></tr>"
        for c in resolved
    )
    body = (
        f"<h1>Review queue</h1><p>{counts['open']} open, {counts['resolved']} resolved; ordered by risk (the "
        f"score to the hundredth), then amount. A case not resolved within {timeout_s:g} s is resolved by "
        "policy.</p>"
        + (
            '<table id="queue"><tr><th>#</th><th>risk</th><th>amount</th><th>user</th><th>merchant</th>'
            f"<th>first reason</th><th>rules</th><th>opened</th><th></th></tr>{rows}</table>"
            if open_cases
            else '<p class="box" id="empty">No open cases.</p>'
        )
        + "<h2>Recently resolved</h2>"
        + (
            f'<table id="resolved"><tr><th>case</th><th>verdict</th><th>by</th><th>at</th><th>note</th></tr>{done}'
            "</table>"
            if resolved
            else "<p>None yet.</p>"
        )
    )
    return page("Queue", body, user, csrf)


def _features(features: dict[str, Any]) -> str:
    rows = []
    for name, value in features.items():
        words, fmt = FEATURE_WORDS.get(name, (name, "{:g}"))
        rows.append(f'<tr><td>{escape(words)}</td><td class="num">{escape(fmt.format(value))}</td></tr>')
    return "<table><tr><th>signal</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _recent_row(r: dict[str, Any]) -> str:
    amount = money(int(r.get("amount_minor") or 0), str(r.get("currency", "")))
    cells = [when(int(r.get("event_time") or 0)), escape(amount)]
    cells += [escape(str(r.get(k, ""))) for k in ("merchant_id", "country", "action")]
    cells.append(f"{float(r.get('score') or 0):.3f}")
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _recent(recent: list[dict[str, Any]]) -> str:
    if not recent:
        return "<p>No earlier payments of this user seen by the pipeline.</p>"
    rows = "".join(_recent_row(r) for r in recent)
    return (
        '<table id="recent"><tr><th>when</th><th>amount</th><th>merchant</th><th>country</th><th>action</th>'
        f"<th>score</th></tr>{rows}</table>"
    )


def case_page(case: Case, on_hold: bool, user: str, csrf: str, message: str = "", error: str = "") -> str:
    """One case: the payment, why it was sent to review, the signals in words, the user's recent
    payments, and the verdict buttons (or the verdict, once resolved)."""
    notice = (f'<p class="ok" id="message">{escape(message)}</p>' if message else "") + (
        f'<p class="err" id="error">{escape(error)}</p>' if error else ""
    )
    if case.is_open:
        verdict = (
            '<div class="box"><h2>Verdict</h2>'
            f'<form method="post" action="/cases/{escape(case.event_id)}/verdict" style="display:inline">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><input type="hidden" name="verdict" '
            'value="CONFIRM"><button class="confirm" id="confirm">Confirm fraud</button></form> '
            f'<form method="post" action="/cases/{escape(case.event_id)}/verdict" style="display:inline">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><input type="hidden" name="verdict" '
            'value="CLEAR"><button class="clear" id="clear">Clear</button></form>'
            "<p>Confirm fraud blocks the card and raises the user's risk tier; Clear lifts the review hold. "
            "Either becomes this payment's label.</p></div>"
        )
    else:
        verdict = (
            f'<div class="box" id="verdict"><h2>Resolved: <span id="verdict-value">{escape(case.verdict)}</span></h2>'
            f"<p>by {escape(case.actor)} at {when(case.resolved_at)}. {escape(case.note)}</p></div>"
        )
    reasons = "".join(f"<li>{escape(r)}</li>" for r in case.reasons) or "<li>none recorded</li>"
    body = (
        f"<h1>Case {escape(case.event_id)}</h1>{notice}"
        '<div class="box"><h2>Payment</h2><table>'
        f'<tr><td>amount</td><td id="amount">{escape(money(case.amount_minor, case.currency, case.amount_eur))}</td></tr>'
        f"<tr><td>user</td><td>{escape(case.user_id)}</td></tr>"
        f"<tr><td>card</td><td>{escape(mask_card(case.card_id))}"
        f"{' (on review hold)' if on_hold else ''}</td></tr>"
        f"<tr><td>merchant</td><td>{escape(case.merchant_id)}</td></tr>"
        f"<tr><td>country</td><td>{escape(case.country)}</td></tr>"
        f"<tr><td>device</td><td>{escape(case.device_id or '-')}</td></tr>"
        f"<tr><td>paid at</td><td>{when(case.event_time)}</td></tr>"
        f"<tr><td>case opened</td><td>{when(case.opened_at)}</td></tr></table></div>"
        '<div class="box"><h2>Why it is here</h2>'
        f"<p>Model {escape(case.model_version)} scored <b>{case.score:.3f}</b> (review from "
        f"{case.threshold:.3f}){' - degraded: the rules decided without the model' if case.degraded else ''}.</p>"
        f'<ul id="reasons">{reasons}</ul>'
        f"<p>Rules fired: {escape(', '.join(case.rules_fired) or 'none')} (rules {escape(case.rules_version or '-')})</p>"
        f"</div>{verdict}"
        f'<div class="box"><h2>Signals</h2>{_features(case.features)}</div>'
        f'<div class="box"><h2>The user\'s recent payments</h2>{_recent(case.recent)}</div>'
    )
    return page(f"Case {case.event_id}", body, user, csrf)


def message_page(title: str, text: str, user: str | None = None, csrf: str = "") -> str:
    return page(
        title,
        f'<h1>{escape(title)}</h1><p class="err">{escape(text)}</p><p><a href="/">Back to the queue</a></p>',
        user,
        csrf,
    )
