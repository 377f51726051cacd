"""A deterministic synthetic population of card holders and merchants, and its payment stream.

Everything is drawn from :class:`random.Random` streams seeded from :attr:`SimConfig.seed`, and time
is event time starting at :attr:`SimConfig.start_ms`: the same config yields the same population
and the same events, byte for byte, on every run. Fraud is injected as *episodes* whose exact
signatures are documented in ``producers/SCENARIOS.md``; every event carries its ground truth.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import re
import uuid
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from random import Random
from statistics import NormalDist
from typing import Any

from fraud_core.feature_catalog import DAY_MS
from fraud_core.features import Profile
from fraud_core.reference import CURRENCIES, MERCHANT_CATEGORIES
from fraud_core.transaction import Transaction

# Episodes a legitimate payment may trigger (each with its ``<name>_rate``), in draw order.
EPISODE_TYPES: tuple[str, ...] = (
    "card_testing",
    "account_takeover",
    "merchant_burst",
    "impossible_travel",
    "compromised_merchant",
    "spending_shift",
)
# Every fraud_type a label may carry: the episodes, plus the later fraud on cards that paid at a
# compromised merchant (a consequence of a compromise, not triggered on its own).
FRAUD_TYPES: tuple[str, ...] = (*EPISODE_TYPES, "compromised_card")

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS

# Country -> (currency, region, UTC offset in hours, weight as a home country).
COUNTRIES: dict[str, tuple[str, str, int, float]] = {
    "DE": ("EUR", "europe", 1, 18),
    "FR": ("EUR", "europe", 1, 14),
    "NL": ("EUR", "europe", 1, 6),
    "ES": ("EUR", "europe", 1, 9),
    "IT": ("EUR", "europe", 1, 9),
    "BE": ("EUR", "europe", 1, 3),
    "AT": ("EUR", "europe", 1, 3),
    "IE": ("EUR", "europe", 0, 2),
    "FI": ("EUR", "europe", 2, 1),
    "PT": ("EUR", "europe", 0, 2),
    "GB": ("GBP", "europe", 0, 10),
    "CH": ("CHF", "europe", 1, 2),
    "SE": ("SEK", "europe", 1, 2),
    "NO": ("NOK", "europe", 1, 1),
    "DK": ("DKK", "europe", 1, 1),
    "PL": ("PLN", "europe", 1, 4),
    "CZ": ("CZK", "europe", 1, 2),
    "US": ("USD", "north_america", -5, 6),
    "CA": ("CAD", "north_america", -5, 2),
    "BR": ("BRL", "south_america", -3, 1),
    "JP": ("JPY", "asia", 9, 1),
    "IN": ("INR", "asia", 5, 1),
    "AU": ("AUD", "oceania", 10, 1),
}
_COUNTRY_CODES = tuple(COUNTRIES)

# MCC -> (weight among merchants, typical amount in EUR, channel weights POS/ECOM/MOBILE).
_MCC_PROFILE: dict[str, tuple[float, float, tuple[float, float, float]]] = {
    "5411": (14, 45, (0.8, 0.05, 0.15)),
    "5812": (12, 40, (0.85, 0.0, 0.15)),
    "5814": (10, 12, (0.8, 0.05, 0.15)),
    "5541": (7, 60, (0.9, 0.0, 0.1)),
    "4111": (5, 4, (0.5, 0.1, 0.4)),
    "5912": (6, 18, (0.85, 0.05, 0.1)),
    "4121": (4, 22, (0.2, 0.2, 0.6)),
    "5311": (5, 70, (0.7, 0.2, 0.1)),
    "5651": (6, 65, (0.5, 0.4, 0.1)),
    "5942": (3, 22, (0.4, 0.5, 0.1)),
    "4899": (3, 14, (0.0, 0.8, 0.2)),
    "5999": (6, 30, (0.4, 0.5, 0.1)),
    "4511": (2, 280, (0.05, 0.75, 0.2)),
    "7011": (3, 180, (0.3, 0.6, 0.1)),
    "5732": (4, 250, (0.5, 0.4, 0.1)),
    "5944": (2, 300, (0.7, 0.3, 0.0)),
    "5967": (2, 45, (0.0, 0.9, 0.1)),
    "6051": (2, 200, (0.0, 0.7, 0.3)),
    "4829": (2, 200, (0.1, 0.5, 0.4)),
    "7995": (2, 50, (0.1, 0.6, 0.3)),
    "5816": (3, 15, (0.0, 0.6, 0.4)),
}
assert set(_MCC_PROFILE) == set(MERCHANT_CATEGORIES), "every reference MCC needs a simulator profile"
_LEGIT_CHANNELS = ("POS", "ECOM", "MOBILE")
# Card testing probes wherever a tiny payment is unremarkable: digital goods, streaming, misc
# retail, direct marketing, books, fast food, transit, pharmacies, groceries.
_CARD_TESTING_MCCS = frozenset({"5816", "4899", "5999", "5967", "5942", "5814", "4111", "5912", "5411"})
_TAKEOVER_MCCS = frozenset({"5732", "5944", "6051", "4829", "4511", "7011", "5651", "5311"})
# Channel mix of each scenario (POS, ECOM, MOBILE): fraud is not tied to one channel.
_CARD_TESTING_CHANNELS = (0.1, 0.55, 0.35)
_TAKEOVER_CHANNELS = (0.0, 0.6, 0.4)
_BURST_CHANNELS = (0.15, 0.55, 0.3)
_TRAVEL_CHANNELS = (0.75, 0.0, 0.25)  # a cloned card at terminals, or its details in a wallet abroad
CROSS_BORDER_SHARE = 0.35  # card testing and bursts at merchants in another country (other currency)

# Legit behaviour.
FAVOURITE_SHARE = 0.85  # share of a user's payments at one of their favourite merchants
AMOUNT_SIGMA = 0.5  # lognormal sigma of one payment around the user's typical amount
MICRO_SHARE = 0.05  # legit micro-payments (apps, games, transit top-ups): tiny ECOM amounts
MICRO_NEW_DEVICE_SHARE = 0.3  # of which from a device not (yet) in the profile: a new phone
TRAVELLER_SHARE = 0.03  # users abroad (in a country of their profile) for the whole stream
OFF_HOURS_WEIGHT = 0.05  # relative activity outside a user's active hours

# Scenario signatures (see SCENARIOS.md; the tests check these bounds).
CARD_TESTING_COUNT = (8, 15)
CARD_TESTING_SPAN_MS = 55 * SECOND_MS
CARD_TESTING_MAX_EUR = 1.99
TAKEOVER_COUNT = (3, 5)
TAKEOVER_GAP_MS = (1 * MINUTE_MS, 7 * MINUTE_MS)
TAKEOVER_MIN_RATIO = 6.0
TAKEOVER_MIN_EUR = 150.0
BURST_COUNT = (4, 7)
BURST_SPAN_MS = 5 * MINUTE_MS
TRAVEL_COUNT = (2, 3)
TRAVEL_FIRST_GAP_MS = (1 * MINUTE_MS, 10 * MINUTE_MS)
TRAVEL_NEXT_GAP_MS = (30 * SECOND_MS, 5 * MINUTE_MS)
EPISODE_COOLDOWN_MS = 2 * HOUR_MS  # a victim is in at most one episode at a time, plus this margin
REISSUE_DELAY_MS = (2 * MINUTE_MS, 15 * MINUTE_MS)  # fraud confirmed -> new card, after the episode
# A compromised merchant (the Fraud Detection Handbook's scenario 2): every payment there during
# the compromise is fraud, and a share of the cards paying there are defrauded elsewhere later.
COMPROMISE_MS = 28 * DAY_MS
COMPROMISED_CARD_SHARE = 0.3
COMPROMISED_CARD_DELAY_MS = (2 * DAY_MS, 14 * DAY_MS)  # from the card's payment there to its fraud
COMPROMISED_CARD_COUNT = (2, 4)
COMPROMISED_CARD_GAP_MS = (2 * MINUTE_MS, 30 * MINUTE_MS)
COMPROMISED_CARD_CNP_SHARE = 0.7  # the card's details online (ECOM/MOBILE), else a cloned card at POS
COMPROMISED_CARD_RATIO = (1.5, 6.0)  # amount over the merchant's typical one (log-uniform)
# A compromised customer (the handbook's scenario 3): for 14 days, each of their payments is, with
# this probability, the fraudster's: five times the amount, otherwise as the customer would pay.
SHIFT_MS = 14 * DAY_MS
SHIFT_SHARE = 1 / 3
SHIFT_FACTOR = 5
# When a label becomes known, from its payment's event time: lognormal (median 6 days, 90% within
# about 1.9-19 days), clipped to [LABEL_DELAY_MIN_MS, LABEL_DELAY_MAX_MS]; LABEL_MISSING_SHARE of
# labels never arrive. Drawn from the event id (a hash), so a replayed stream file has the same ones.
LABEL_DELAY_MEDIAN_MS = 6 * DAY_MS
LABEL_DELAY_SIGMA = 0.7
LABEL_DELAY_MIN_MS = 12 * HOUR_MS
LABEL_DELAY_MAX_MS = 60 * DAY_MS
LABEL_MISSING_SHARE = 0.05

# Who has a profile: new customers are onboarded before the enrichment store knows them.
NO_PROFILE_SHARE = 0.08  # users with no stored profile (opened their account during the stream)
NEW_USER_SHARE = 0.08  # users with a profile but an account only days old and few payments
STRESS_NO_PROFILE_SHARE = 0.2

# The population shift (``SimConfig.drift_at``): a new market opens. From then on this share of
# legitimate payments are customers paying in countries far from the training mix, at the
# merchants of expensive and risky categories, mostly online, for several times their usual amounts.
DRIFT_SHARE = 0.6
DRIFT_COUNTRIES = ("BR", "IN", "JP", "AU", "US", "CA")
DRIFT_MCCS = frozenset({"5732", "4511", "7011", "6051", "7995", "5967", "5944", "4829"})
DRIFT_CHANNELS = (0.1, 0.6, 0.3)  # POS, ECOM, MOBILE
DRIFT_AMOUNT_FACTOR = 3.0


@dataclass(frozen=True)
class SimConfig:
    """Size, seed, pace and fraud rates of a simulation.

    ``rate_eps`` is the mean number of legitimate payments per second of *event* time (the default,
    0.05 for 2000 users, is about 2 payments per user per day: 200,000 events span 46 days); the
    ``*_rate`` fields are the probability, per legitimate payment, that an episode of that fraud
    scenario starts. The defaults give about 2% fraudulent events. ``stress`` makes the held-out
    stress variant (SCENARIOS.md): other user and merchant ids, more users without a profile, and
    each signature's timings and amounts drawn from the far end of its bounds.
    """

    seed: int = 7
    n_users: int = 2000
    n_merchants: int = 400
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    rate_eps: float = 0.05
    card_testing_rate: float = 0.0008
    account_takeover_rate: float = 0.0012
    merchant_burst_rate: float = 0.0008
    impossible_travel_rate: float = 0.0012
    compromised_merchant_rate: float = 0.00005
    spending_shift_rate: float = 0.0002
    stress: bool = False
    drift_at: int | None = None
    # Renames users, merchants and cards (nothing else changes): a run of ``make demo`` gets ids no
    # earlier run used, so no blocklist entry, profile or label of one meets the next.
    id_salt: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-z]{0,16}", self.id_salt):
            raise ValueError(f"id_salt must be 0-16 lower-case letters or digits, got {self.id_salt!r}")
        if self.n_users < 1:
            raise ValueError(f"n_users must be >= 1, got {self.n_users}")
        if self.n_merchants < len(MERCHANT_CATEGORIES):
            raise ValueError(f"n_merchants must be >= {len(MERCHANT_CATEGORIES)}, got {self.n_merchants}")
        if not self.rate_eps > 0:
            raise ValueError(f"rate_eps must be > 0, got {self.rate_eps}")
        if self.drift_at is not None and self.drift_at < 0:
            raise ValueError(f"drift_at must be >= 0 (an event count), got {self.drift_at}")
        rates = self.fraud_rates()
        for name, rate in rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"{name}_rate must be within [0, 1], got {rate}")
        if sum(rates.values()) > 1:
            raise ValueError(f"fraud rates must sum to <= 1, got {sum(rates.values())}")

    def fraud_rates(self) -> dict[str, float]:
        """Episode start probability per legitimate payment, by fraud type."""
        return {
            "card_testing": self.card_testing_rate,
            "account_takeover": self.account_takeover_rate,
            "merchant_burst": self.merchant_burst_rate,
            "impossible_travel": self.impossible_travel_rate,
            "compromised_merchant": self.compromised_merchant_rate,
            "spending_shift": self.spending_shift_rate,
        }


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated payment with its ground truth."""

    txn: Transaction
    is_fraud: bool
    fraud_type: str | None

    @property
    def label_delay_ms(self) -> int | None:
        """How long after its payment this event's label becomes known; None: it never arrives.

        A chargeback or a customer's report comes days later, some never come (SCENARIOS.md,
        "Labels"). Drawn from a hash of the event id rather than the stream's random generator,
        so the events stay exactly those of earlier versions and a replayed file has the same delays.
        """
        return label_delay_ms(self.txn.event_id)

    @property
    def labelled_at(self) -> int | None:
        """Event time at which this event's label is known; None when it never arrives."""
        delay = self.label_delay_ms
        return None if delay is None else self.txn.event_time + delay

    def simulated_label(self) -> dict[str, Any] | None:
        """The ``payments.labels`` record at its simulated delay, or None when it never arrives."""
        delay = self.label_delay_ms
        return None if delay is None else self.label_record(delay)

    def label_record(self, delay_ms: int = 0) -> dict[str, Any]:
        """The ``payments.labels`` record of this event, known ``delay_ms`` after its event time
        (a fixed delay; :meth:`simulated_label` uses the simulated one)."""
        return {
            "event_id": self.txn.event_id,
            "is_fraud": self.is_fraud,
            "fraud_type": self.fraud_type,
            "labelled_at": self.txn.event_time + delay_ms,
            "source": "simulator",
            "card_id": self.txn.card_id,
            "merchant_id": self.txn.merchant_id,
            "event_time": self.txn.event_time,
        }


_NORMAL = NormalDist()


def label_delay_ms(event_id: str) -> int | None:
    """The simulated delay of the label of ``event_id`` (see :attr:`SimEvent.label_delay_ms`)."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=16, person=b"fraud-sim-label").digest()
    missing = int.from_bytes(digest[:8], "big") / 2**64
    if missing < LABEL_MISSING_SHARE:
        return None
    u = (int.from_bytes(digest[8:], "big") + 0.5) / 2**64
    delay = LABEL_DELAY_MEDIAN_MS * math.exp(LABEL_DELAY_SIGMA * _NORMAL.inv_cdf(u))
    return int(min(LABEL_DELAY_MAX_MS, max(LABEL_DELAY_MIN_MS, delay)))


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    mcc: str
    risk: int
    typical_eur: float
    channels: tuple[float, float, float]

    @property
    def ecom(self) -> bool:
        return self.channels[1] > 0

    @property
    def pos(self) -> bool:
        return self.channels[0] > 0

    def accepts(self, channel: str) -> bool:
        return self.channels[_LEGIT_CHANNELS.index(channel)] > 0


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    home_country: str
    location: str  # where the user pays during the stream (home, or a trip country)
    cards: tuple[str, ...]
    devices: tuple[str, ...]
    visited: tuple[str, ...]
    spend_level: float
    favourites: tuple[int, ...]  # merchant indexes
    favourite_cum_weights: tuple[float, ...]
    active_hours: tuple[int, int]  # local [start, end)
    account_created_ms: int
    risk_tier: int
    past_txn_count: int
    has_profile: bool = True
    avg_amount: float = field(default=0.0)


def _currency(country: str) -> str:
    return COUNTRIES[country][0]


def _region(country: str) -> str:
    return COUNTRIES[country][1]


def _minor(amount_eur: float, currency: str, *, round_up: bool = False) -> int:
    """EUR amount -> minor units of ``currency``; ``round_up`` keeps a lower bound in EUR."""
    exponent, rate = CURRENCIES[currency]
    raw = amount_eur / rate * 10.0**exponent
    return max(1, math.ceil(raw) if round_up else math.floor(raw))


def _hex(rng: Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


class Simulator:
    """The population of a :class:`SimConfig` and its payment stream."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._salt = f"{config.id_salt}_" if config.id_salt else ""
        rng = Random(f"fraud-sim:{config.seed}:population")
        self.merchants = self._make_merchants(rng)
        self._merchant_cum = tuple(accumulate(rng.lognormvariate(0, 1) for _ in self.merchants))
        self.users = self._make_users(rng)
        self._hour_cum = self._hourly_weights()
        self._testing_pools = self._pools(_CARD_TESTING_MCCS, CARD_TESTING_COUNT[1])
        self._burst_pools = self._pools(
            frozenset(m.mcc for m in self.merchants if m.risk == 2), BURST_COUNT[1]
        )
        self._takeover_pools = self._pools(_TAKEOVER_MCCS, 1)
        self._drift_pools = self._pools(DRIFT_MCCS, 1)
        self._pos_pool = [i for i, m in enumerate(self.merchants) if m.pos]
        self._any_pools = self._pools(frozenset(MERCHANT_CATEGORIES), 1)

    def new_card(self, rng: Random) -> str:
        """A new card token, ``card_<16 hex>``: drawn from ``rng``, then hashed with the id salt if any."""
        raw = _hex(rng, 64)
        if not self.config.id_salt:
            return f"card_{raw}"
        return f"card_{hashlib.blake2b(f'{self.config.id_salt}:{raw}'.encode(), digest_size=8).hexdigest()}"

    def _pools(self, mccs: frozenset[str], at_least: int) -> dict[str, list[int]]:
        """Per channel, the merchants of ``mccs`` that accept it (every merchant accepting it when
        fewer than ``at_least``: a scenario needs that many distinct merchants)."""
        pools = {}
        for channel in _LEGIT_CHANNELS:
            accepting = [i for i, m in enumerate(self.merchants) if m.accepts(channel)]
            mine = [i for i in accepting if self.merchants[i].mcc in mccs]
            pools[channel] = mine if len(mine) >= at_least else accepting
        return pools

    # Population -------------------------------------------------------------------------------

    def _make_merchants(self, rng: Random) -> list[Merchant]:
        mccs = list(_MCC_PROFILE)
        weights = [_MCC_PROFILE[m][0] for m in mccs]
        # Every category exists at least once, so every scenario finds its merchants.
        chosen = mccs + rng.choices(mccs, weights=weights, k=self.config.n_merchants - len(mccs))
        rng.shuffle(chosen)
        width = max(4, len(str(self.config.n_merchants)))
        return [
            Merchant(
                merchant_id=f"{'smerch' if self.config.stress else 'merch'}_{self._salt}{i:0{width}d}",
                mcc=mcc,
                risk=MERCHANT_CATEGORIES[mcc][1],
                typical_eur=_MCC_PROFILE[mcc][1] * rng.lognormvariate(0, 0.25),
                channels=_MCC_PROFILE[mcc][2],
            )
            for i, mcc in enumerate(chosen)
        ]

    def _make_users(self, rng: Random) -> list[User]:
        start = self.config.start_ms
        home_cum = list(accumulate(COUNTRIES[c][3] for c in _COUNTRY_CODES))
        width = max(5, len(str(self.config.n_users)))
        prefix = "suser" if self.config.stress else "user"
        no_profile = STRESS_NO_PROFILE_SHARE if self.config.stress else NO_PROFILE_SHARE
        users: list[User] = []
        for i in range(self.config.n_users):
            home = rng.choices(_COUNTRY_CODES, cum_weights=home_cum)[0]
            visited: list[str] = []
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                same_region = [c for c in _COUNTRY_CODES if _region(c) == _region(home)]
                pool = same_region if rng.random() < 0.7 else list(_COUNTRY_CODES)
                country = rng.choice(pool)
                if country != home and country not in visited:
                    visited.append(country)
            if rng.random() < TRAVELLER_SHARE:
                if not visited:
                    visited.append(rng.choice([c for c in _COUNTRY_CODES if c != home]))
                location = visited[0]
            else:
                location = home
            n_fav = rng.randint(4, 10)
            drawn = rng.choices(range(len(self.merchants)), cum_weights=self._merchant_cum, k=n_fav)
            favourites = tuple(dict.fromkeys(drawn))
            fav_cum = tuple(accumulate(rng.lognormvariate(0, 0.8) for _ in favourites))
            age_days = min(5000, max(1, int(rng.lognormvariate(6.0, 1.0))))
            kind = rng.random()
            has_profile = kind >= no_profile
            if not has_profile:
                age_days = 0  # the account opens as the stream starts
            elif kind < no_profile + NEW_USER_SHARE:
                age_days = rng.randint(1, 30)
            user = User(
                user_id=f"{prefix}_{self._salt}{i:0{width}d}",
                home_country=home,
                location=location,
                cards=tuple(self.new_card(rng) for _ in range(rng.choice((1, 1, 1, 2)))),
                devices=tuple(f"dev_{_hex(rng, 48)}" for _ in range(rng.choice((1, 1, 2, 2, 3)))),
                visited=tuple(visited),
                spend_level=rng.lognormvariate(0, 0.45),
                favourites=favourites,
                favourite_cum_weights=fav_cum,
                active_hours=(rng.randint(6, 10), rng.randint(20, 24)),
                account_created_ms=start - age_days * DAY_MS - rng.randrange(DAY_MS),
                risk_tier=rng.choices((0, 1, 2), weights=(85, 12, 3))[0],
                past_txn_count=int(age_days * rng.uniform(0.3, 3.0)),
                has_profile=has_profile,
            )
            users.append(_with_avg_amount(user, self.merchants, self._merchant_cum))
        return users

    def _hourly_weights(self) -> list[list[float]]:
        """Cumulative user weights for each UTC hour of the day (active hours in local time)."""
        tables = []
        for hour in range(24):
            weights = []
            for u in self.users:
                local = (hour + COUNTRIES[u.location][2]) % 24
                lo, hi = u.active_hours
                weights.append(1.0 if lo <= local < hi else OFF_HOURS_WEIGHT)
            tables.append(list(accumulate(weights)))
        return tables

    def profiles(self) -> dict[str, Profile]:
        """The profile of every user who has one at the start of the stream, as seeded into Redis
        (users without one, :data:`NO_PROFILE_SHARE`, pay from the start all the same)."""
        return {
            u.user_id: Profile(
                avg_amount=u.avg_amount,
                home_country=u.home_country,
                account_created_ms=u.account_created_ms,
                risk_tier=u.risk_tier,
                devices=u.devices,
                countries=(u.home_country, *u.visited),
                txn_count=u.past_txn_count,
            )
            for u in self.users
            if u.has_profile
        }

    # Stream -----------------------------------------------------------------------------------

    def events(self, count: int | None = None, duration_s: float | None = None) -> Iterator[SimEvent]:
        """Yield payments in non-decreasing event-time order, legitimate and fraudulent interleaved.

        Stops after ``count`` events or at ``start_ms + duration_s`` of event time, whichever
        comes first; endless when both are None. Episodes still running at the end are cut
        short. Each call starts the same stream afresh (cards reissued during one stream are
        back to the population's at the next call).
        """
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if duration_s is not None and duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        cfg = self.config
        rng = Random(f"fraud-sim:{cfg.seed}:events")
        end_ms = cfg.start_ms + duration_s * 1000 if duration_s is not None else math.inf
        rate_per_ms = cfg.rate_eps / 1000
        thresholds = list(accumulate(cfg.fraud_rates().values()))
        busy_until: dict[int, int] = {}
        cards = _Cards(self.users, self.new_card)
        state = _Compromises()
        pending: list[tuple[int, int, SimEvent]] = []  # heap of (event_time, seq, event)
        emitted = 0
        clock = float(cfg.start_ms)
        while count is None or emitted < count:
            clock += rng.expovariate(rate_per_ms)
            now = int(clock)
            while pending and pending[0][0] <= now and (count is None or emitted < count):
                if pending[0][0] >= end_ms:
                    return
                yield heapq.heappop(pending)[2]
                emitted += 1
            if now >= end_ms or (count is not None and emitted >= count):
                return
            cards.apply_reissues(rng, now)
            user_index = self._pick_user(rng, now)
            user = self.users[user_index]
            # Drawn only after the shift, so the stream before it is the unshifted one, exactly.
            if cfg.drift_at is not None and emitted >= cfg.drift_at and rng.random() < DRIFT_SHARE:
                txn = self._shifted_txn(rng, user, now, cards.of(user))
            else:
                txn = self._legit_txn(rng, user, now, cards.of(user))
            yield self._compromised(rng, txn, user, state, pending, cards)
            emitted += 1
            draw = rng.random()
            kind = bisect(thresholds, draw)
            if kind < len(EPISODE_TYPES):
                episode = self._episode(rng, EPISODE_TYPES[kind], now, busy_until, cards, state)
                for ev in episode:
                    heapq.heappush(pending, (ev.txn.event_time, next(state.seq), ev))

    def _compromised(
        self,
        rng: Random,
        txn: Transaction,
        user: User,
        state: _Compromises,
        pending: list[tuple[int, int, SimEvent]],
        cards: _Cards,
    ) -> SimEvent:
        """The customer's own payment ``txn`` as an event, unless a compromise makes it fraud: the
        customer's credentials (a spending shift: some payments are the fraudster's, five times the
        amount), or the merchant (every payment there is fraud, and the card may be defrauded later).
        Draws nothing while no compromise is running, so streams without one are unchanged."""
        now = txn.event_time
        if state.shifted.get(user.user_id, 0) > now and rng.random() < SHIFT_SHARE:
            return SimEvent(
                replace(txn, amount_minor=txn.amount_minor * SHIFT_FACTOR), True, "spending_shift"
            )
        if state.merchants.get(txn.merchant_id, 0) <= now:
            return SimEvent(txn, False, None)
        if txn.card_id not in state.seen_cards:
            state.seen_cards.add(txn.card_id)
            if rng.random() < COMPROMISED_CARD_SHARE:
                later = self._compromised_card(rng, user, now, txn.card_id)
                for ev in later:
                    heapq.heappush(pending, (ev.txn.event_time, next(state.seq), ev))
                last = later[-1].txn
                cards.schedule_reissue(last.event_time + rng.randrange(*REISSUE_DELAY_MS), user, last.card_id)
        return SimEvent(txn, True, "compromised_merchant")

    def _pick_user(self, rng: Random, now: int, exclude: dict[int, int] | None = None) -> int:
        cum = self._hour_cum[(now // HOUR_MS) % 24]
        for _ in range(20):
            index = bisect(cum, rng.random() * cum[-1])
            index = min(index, len(cum) - 1)
            if exclude is None or exclude.get(index, 0) <= now:
                return index
        return index

    def _draw_ms(self, rng: Random, bounds: tuple[int, int]) -> int:
        """A duration within ``bounds``: anywhere in training streams, in the slower half in the
        stress variant (other timings, same signature)."""
        lo, hi = bounds
        if self.config.stress:
            lo = (lo + hi) // 2
        return rng.randrange(lo, hi)

    def _txn(
        self,
        rng: Random,
        user: User,
        *,
        t: int,
        merchant: Merchant,
        amount_minor: int,
        country: str,
        channel: str,
        card: str,
        device: str | None = None,
    ) -> Transaction:
        return Transaction(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            user_id=user.user_id,
            card_id=card,
            amount_minor=amount_minor,
            currency=_currency(country),
            merchant_id=merchant.merchant_id,
            merchant_category=merchant.mcc,
            country=country,
            channel=channel,
            event_time=t,
            device_id=device if channel in ("ECOM", "MOBILE") else None,
        )

    def _legit_txn(self, rng: Random, user: User, t: int, cards: tuple[str, ...]) -> Transaction:
        if rng.random() < MICRO_SHARE:
            return self._micro_txn(rng, user, t, cards[0])
        if rng.random() < FAVOURITE_SHARE:
            cum = user.favourite_cum_weights
            index = user.favourites[bisect(cum, rng.random() * cum[-1])]
        else:
            index = bisect(self._merchant_cum, rng.random() * self._merchant_cum[-1])
        merchant = self.merchants[min(index, len(self.merchants) - 1)]
        channel = rng.choices(_LEGIT_CHANNELS, weights=merchant.channels)[0]
        amount_eur = merchant.typical_eur * user.spend_level * rng.lognormvariate(0, AMOUNT_SIGMA)
        card = cards[0] if len(cards) == 1 or rng.random() < 0.9 else cards[1]
        return self._txn(
            rng,
            user,
            t=t,
            merchant=merchant,
            amount_minor=_minor(amount_eur, _currency(user.location)),
            country=user.location,
            channel=channel,
            card=card,
            device=user.devices[0] if rng.random() < 0.8 else rng.choice(user.devices),
        )

    def _shifted_txn(self, rng: Random, user: User, t: int, cards: tuple[str, ...]) -> Transaction:
        """A legitimate payment of the shifted population (after ``drift_at``): a new market."""
        country = rng.choice([c for c in DRIFT_COUNTRIES if c != user.home_country])
        channel = rng.choices(_LEGIT_CHANNELS, weights=DRIFT_CHANNELS)[0]
        merchant = self.merchants[rng.choice(self._drift_pools[channel])]
        amount_eur = (
            merchant.typical_eur
            * user.spend_level
            * DRIFT_AMOUNT_FACTOR
            * rng.lognormvariate(0, AMOUNT_SIGMA)
        )
        return self._txn(
            rng,
            user,
            t=t,
            merchant=merchant,
            amount_minor=_minor(amount_eur, _currency(country)),
            country=country,
            channel=channel,
            card=cards[0],
            device=user.devices[0],
        )

    def _micro_txn(self, rng: Random, user: User, t: int, card: str) -> Transaction:
        """A legitimate tiny online payment: alone it looks like one card-testing probe, which is
        why only the velocity features (many within seconds) separate card testing from it."""
        channel = "ECOM" if rng.random() < 0.6 else "MOBILE"
        merchant = self.merchants[rng.choice(self._testing_pools[channel])]
        new_device = rng.random() < MICRO_NEW_DEVICE_SHARE
        return self._txn(
            rng,
            user,
            t=t,
            merchant=merchant,
            amount_minor=_minor(rng.uniform(0.10, CARD_TESTING_MAX_EUR), _currency(user.location)),
            country=user.location,
            channel=channel,
            card=card,
            device=f"dev_{_hex(rng, 48)}" if new_device else user.devices[0],
        )

    # Fraud episodes ---------------------------------------------------------------------------

    def _episode(
        self, rng: Random, kind: str, now: int, busy_until: dict[int, int], cards: _Cards, state: _Compromises
    ) -> list[SimEvent]:
        if kind == "compromised_merchant":
            # Any merchant, whatever its category or channels; its own payments carry the fraud.
            merchant = self.merchants[rng.randrange(len(self.merchants))]
            if state.merchants.get(merchant.merchant_id, 0) <= now:
                state.merchants[merchant.merchant_id] = now + COMPROMISE_MS
            return []
        index = self._pick_user(rng, now, exclude=busy_until)
        if busy_until.get(index, 0) > now:
            return []  # everyone we drew is already a victim; skip rather than overlap episodes
        user = self.users[index]
        if kind == "spending_shift":
            state.shifted[user.user_id] = now + SHIFT_MS
            busy_until[index] = now + SHIFT_MS + EPISODE_COOLDOWN_MS
            return []
        build = {
            "card_testing": self._card_testing,
            "account_takeover": self._account_takeover,
            "merchant_burst": self._merchant_burst,
            "impossible_travel": self._impossible_travel,
        }[kind]
        events = build(rng, user, now, cards.of(user))
        last = events[-1].txn
        busy_until[index] = last.event_time + EPISODE_COOLDOWN_MS
        # The fraud is confirmed and the bank reissues the card the fraudster used.
        cards.schedule_reissue(last.event_time + rng.randrange(*REISSUE_DELAY_MS), user, last.card_id)
        return events

    def _fraud_country(self, rng: Random, user: User) -> str:
        """Where a card-not-present fraud pays: where the user is, or a merchant abroad."""
        if rng.random() < CROSS_BORDER_SHARE:
            return rng.choice([c for c in _COUNTRY_CODES if c != user.location])
        return user.location

    def _card_testing(self, rng: Random, user: User, now: int, cards: tuple[str, ...]) -> list[SimEvent]:
        n = rng.randint(*CARD_TESTING_COUNT)
        first = now + rng.randrange(5 * SECOND_MS)
        span = self._draw_ms(rng, (10 * SECOND_MS, CARD_TESTING_SPAN_MS + 1))
        offsets = [0, *sorted(rng.randrange(500, span) for _ in range(n - 1))]
        channel = rng.choices(_LEGIT_CHANNELS, weights=_CARD_TESTING_CHANNELS)[0]
        merchants = rng.sample(self._testing_pools[channel], n)
        device = f"dev_{_hex(rng, 48)}"
        country = self._fraud_country(rng, user)
        low = 1.0 if self.config.stress else 0.10
        return [
            SimEvent(
                self._txn(
                    rng,
                    user,
                    t=first + off,
                    merchant=self.merchants[m],
                    amount_minor=_minor(rng.uniform(low, CARD_TESTING_MAX_EUR), _currency(country)),
                    country=country,
                    channel=channel,
                    card=cards[0],
                    device=device,
                ),
                True,
                "card_testing",
            )
            for off, m in zip(offsets, merchants, strict=True)
        ]

    def _account_takeover(self, rng: Random, user: User, now: int, cards: tuple[str, ...]) -> list[SimEvent]:
        n = rng.randint(*TAKEOVER_COUNT)
        known = {user.home_country, user.location, *user.visited}
        country = rng.choice([c for c in _COUNTRY_CODES if c not in known])
        device = f"dev_{_hex(rng, 48)}"
        channel = rng.choices(_LEGIT_CHANNELS, weights=_TAKEOVER_CHANNELS)[0]
        pool = self._takeover_pools[channel]
        top_ratio = 9.0 if self.config.stress else 15.0
        t = now + rng.randrange(MINUTE_MS)
        events = []
        for _ in range(n):
            ratio = rng.uniform(TAKEOVER_MIN_RATIO, top_ratio)
            amount_eur = min(20_000.0, max(TAKEOVER_MIN_EUR, user.avg_amount * ratio))
            txn = self._txn(
                rng,
                user,
                t=t,
                merchant=self.merchants[rng.choice(pool)],
                amount_minor=_minor(amount_eur, _currency(country), round_up=True),
                country=country,
                channel=channel,
                card=cards[0],
                device=device,
            )
            events.append(SimEvent(txn, True, "account_takeover"))
            t += self._draw_ms(rng, TAKEOVER_GAP_MS)
        return events

    def _merchant_burst(self, rng: Random, user: User, now: int, cards: tuple[str, ...]) -> list[SimEvent]:
        n = rng.randint(*BURST_COUNT)
        first = now + rng.randrange(30 * SECOND_MS)
        span = self._draw_ms(rng, (MINUTE_MS, BURST_SPAN_MS + 1))
        offsets = [0, *sorted(rng.randrange(10 * SECOND_MS, span) for _ in range(n - 1))]
        channel = rng.choices(_LEGIT_CHANNELS, weights=_BURST_CHANNELS)[0]
        merchants = rng.sample(self._burst_pools[channel], n)
        device = f"dev_{_hex(rng, 48)}"
        country = self._fraud_country(rng, user)
        return [
            SimEvent(
                self._txn(
                    rng,
                    user,
                    t=first + off,
                    merchant=self.merchants[m],
                    amount_minor=_minor(
                        math.exp(rng.uniform(math.log(30), math.log(500))), _currency(country)
                    ),
                    country=country,
                    channel=channel,
                    card=cards[0],
                    device=device,
                ),
                True,
                "merchant_burst",
            )
            for off, m in zip(offsets, merchants, strict=True)
        ]

    def _impossible_travel(self, rng: Random, user: User, now: int, cards: tuple[str, ...]) -> list[SimEvent]:
        anchor_merchant = self.merchants[rng.choice(self._testing_pools["POS"] + self._burst_pools["POS"])]
        t = now + rng.randrange(30 * SECOND_MS)
        anchor_eur = anchor_merchant.typical_eur * user.spend_level * rng.lognormvariate(0, AMOUNT_SIGMA)
        anchor = self._txn(
            rng,
            user,
            t=t,
            merchant=anchor_merchant,
            amount_minor=_minor(anchor_eur, _currency(user.location)),
            country=user.location,
            channel="POS",
            card=cards[0],
        )
        events = [SimEvent(anchor, False, None)]  # the genuine card holder, at home
        far = rng.choice([c for c in _COUNTRY_CODES if _region(c) != _region(user.location)])
        channel = rng.choices(_LEGIT_CHANNELS, weights=_TRAVEL_CHANNELS)[0]
        device = f"dev_{_hex(rng, 48)}"  # the fraudster's phone, when the card is in a wallet
        t += self._draw_ms(rng, TRAVEL_FIRST_GAP_MS)
        for _ in range(rng.randint(*TRAVEL_COUNT)):
            txn = self._txn(
                rng,
                user,
                t=t,
                merchant=self.merchants[rng.choice(self._pos_pool)],
                amount_minor=_minor(rng.uniform(40, 500), _currency(far)),
                country=far,
                channel=channel,
                card=anchor.card_id,  # the cloned card
                device=device,
            )
            events.append(SimEvent(txn, True, "impossible_travel"))
            t += self._draw_ms(rng, TRAVEL_NEXT_GAP_MS)
        return events

    def _compromised_card(self, rng: Random, user: User, paid_at: int, card: str) -> list[SimEvent]:
        """Days after ``card`` paid at a compromised merchant, the fraudster uses it elsewhere: its
        details online from a new device, or a cloned card at terminals, at home or abroad."""
        n = rng.randint(*COMPROMISED_CARD_COUNT)
        t = paid_at + rng.randrange(*COMPROMISED_CARD_DELAY_MS)
        if rng.random() < COMPROMISED_CARD_CNP_SHARE:
            channel = "ECOM" if rng.random() < 0.6 else "MOBILE"
        else:
            channel = "POS"
        device = f"dev_{_hex(rng, 48)}"
        country = rng.choice(_COUNTRY_CODES) if rng.random() < 0.5 else user.location
        low, high = (math.log(r) for r in COMPROMISED_CARD_RATIO)
        events = []
        for _ in range(n):
            merchant = self.merchants[rng.choice(self._any_pools[channel])]
            amount_eur = merchant.typical_eur * math.exp(rng.uniform(low, high))
            txn = self._txn(
                rng,
                user,
                t=t,
                merchant=merchant,
                amount_minor=_minor(amount_eur, _currency(country)),
                country=country,
                channel=channel,
                card=card,
                device=device,
            )
            events.append(SimEvent(txn, True, "compromised_card"))
            t += rng.randrange(*COMPROMISED_CARD_GAP_MS)
        return events


@dataclass
class _Compromises:
    """The compromises running in one stream: merchant id -> end of its compromise, user id -> end
    of their spending shift, and the cards already seen at a compromised merchant (each card is
    drawn for later fraud once)."""

    merchants: dict[str, int] = field(default_factory=dict)
    shifted: dict[str, int] = field(default_factory=dict)
    seen_cards: set[str] = field(default_factory=set)
    seq: Iterator[int] = field(default_factory=itertools.count)  # ties in the pending heap, in push order


class _Cards:
    """The cards each user holds during one stream: the population's, until the bank reissues a
    card after confirmed fraud on it (the genuine customer then pays with the new one)."""

    def __init__(self, users: Sequence[User], new_card: Callable[[Random], str]) -> None:
        self._new_card = new_card
        self._users = {u.user_id: u for u in users}
        self._current: dict[str, tuple[str, ...]] = {}
        self._due: list[tuple[int, str, str]] = []  # heap of (reissue time, user_id, old card)

    def of(self, user: User) -> tuple[str, ...]:
        return self._current.get(user.user_id, user.cards)

    def schedule_reissue(self, at_ms: int, user: User, card: str) -> None:
        heapq.heappush(self._due, (at_ms, user.user_id, card))

    def apply_reissues(self, rng: Random, now: int) -> None:
        while self._due and self._due[0][0] <= now:
            _, user_id, old = heapq.heappop(self._due)
            held = self.of(self._users[user_id])
            self._current[user_id] = tuple(self._new_card(rng) if c == old else c for c in held)


def _with_avg_amount(user: User, merchants: Sequence[Merchant], merchant_cum: Sequence[float]) -> User:
    """Attach the expected EUR amount of the user's legitimate payments (the profile average)."""
    fav_total = user.favourite_cum_weights[-1]
    previous = 0.0
    favourite_mean = 0.0
    for index, cum in zip(user.favourites, user.favourite_cum_weights, strict=True):
        favourite_mean += (cum - previous) / fav_total * merchants[index].typical_eur
        previous = cum
    previous = 0.0
    overall_mean = 0.0
    for merchant, cum in zip(merchants, merchant_cum, strict=True):
        overall_mean += (cum - previous) / merchant_cum[-1] * merchant.typical_eur
        previous = cum
    mix = FAVOURITE_SHARE * favourite_mean + (1 - FAVOURITE_SHARE) * overall_mean
    avg = mix * user.spend_level * math.exp(AMOUNT_SIGMA**2 / 2)
    return replace(user, avg_amount=round(avg, 2))
