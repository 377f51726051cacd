"""Reference data the features and validation rely on: currencies, merchant categories, channels.

Frozen tables, versioned with the code, so that a replay a year from now computes the same features.
"""

from __future__ import annotations

# ISO 4217 code -> (minor-unit exponent, indicative EUR per unit). Rates are frozen on purpose:
# features must not move when the market does, or replays would not reproduce live decisions.
CURRENCIES: dict[str, tuple[int, float]] = {
    "EUR": (2, 1.0),
    "USD": (2, 0.92),
    "GBP": (2, 1.17),
    "CHF": (2, 1.04),
    "SEK": (2, 0.088),
    "NOK": (2, 0.086),
    "DKK": (2, 0.134),
    "PLN": (2, 0.23),
    "CZK": (2, 0.040),
    "CAD": (2, 0.68),
    "AUD": (2, 0.61),
    "JPY": (0, 0.0062),
    "BRL": (2, 0.17),
    "INR": (2, 0.011),
}

# Merchant category code -> (label, risk class 0 low / 1 medium / 2 high). MCCs not listed are
# valid (there are hundreds) and count as medium risk.
MERCHANT_CATEGORIES: dict[str, tuple[str, int]] = {
    "5411": ("grocery stores", 0),
    "5812": ("restaurants", 0),
    "5814": ("fast food", 0),
    "5541": ("service stations", 0),
    "4111": ("commuter transport", 0),
    "5912": ("drug stores", 0),
    "4121": ("taxis and rideshare", 0),
    "5311": ("department stores", 0),
    "5651": ("clothing stores", 1),
    "5942": ("book stores", 0),
    "4899": ("cable and streaming", 0),
    "5999": ("miscellaneous retail", 1),
    "4511": ("airlines", 1),
    "7011": ("hotels", 1),
    "5732": ("electronics stores", 2),
    "5944": ("jewelry stores", 2),
    "5967": ("direct marketing, inbound telemarketing", 2),
    "6051": ("quasi-cash, crypto", 2),
    "4829": ("money transfer", 2),
    "7995": ("gambling", 2),
    "5816": ("digital goods, games", 2),
}
UNKNOWN_MCC_RISK = 1

CHANNELS: tuple[str, ...] = ("POS", "ECOM", "ATM", "MOBILE", "UNKNOWN")

MAX_AMOUNT_MINOR = 10_000_000_00  # ten million major units: anything larger is a broken record


def to_eur(amount_minor: int, currency: str) -> float:
    """Convert an amount in minor units of ``currency`` to EUR, rounded to cents."""
    exponent, rate = CURRENCIES[currency]
    return round(amount_minor / 10.0**exponent * rate, 2)


def mcc_risk(mcc: str) -> int:
    """Risk class of a merchant category code (0 low, 1 medium, 2 high)."""
    entry = MERCHANT_CATEGORIES.get(mcc)
    return UNKNOWN_MCC_RISK if entry is None else entry[1]
