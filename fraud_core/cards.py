"""Card numbers (PANs) never travel: how one is recognised, whatever its separators, and masked.

A ``card_id`` must be a token. A value whose digits, once spaces, dashes, dots, underscores and
colons are removed, are 13 to 19 digits passing the Luhn check is a PAN. Text that may hold one
(error messages, dead-letter records) shows only its last four digits.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[ \-._:]")
# 13-19 digits, each pair at most one separator apart, not inside a longer run of digits.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ \-._:]?[0-9]){12,18}(?![0-9])")


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_pan(value: str) -> bool:
    """Whether ``value`` is a card number: only digits and separators, 13-19 digits, Luhn-valid."""
    digits = _SEPARATORS.sub("", value)
    return 13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit() and luhn_ok(digits)


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = _SEPARATORS.sub("", text)
    if not luhn_ok(digits):
        return text
    keep = len(text) - 4
    return "".join("*" if ch.isdigit() else ch for ch in text[:keep]) + text[keep:]


def mask_pans(text: str) -> str:
    """``text`` with every card number in it masked but its last four digits, separators kept, so
    the length is unchanged (a masked Avro string keeps its encoding)."""
    return _CANDIDATE.sub(_mask, text)


def mask_card(card_id: str) -> str:
    """A card id (token or not) as logs may show it: everything but its last four characters masked."""
    return f"****{card_id[-4:]}" if len(card_id) > 4 else "****"
