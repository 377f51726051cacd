"""Training from the topics, pure parts: the label as known at T, unknown labels left out, and the
replay that gives a label only the payments after its ``labelled_at``. No processes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.labels import Label
from fraud_core.transaction import Transaction
from inference_service.exceptions import TrainingError
from inference_service.training.from_topics import (
    Positioned,
    TopicHistory,
    TopicLabel,
    build_rows,
    labelled_rows,
    labels_as_of,
    parse_until,
)

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MERCHANT_RATE_30D = FEATURE_NAMES.index("merchant_fraud_rate_30d")


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def _txn(n: int, t: int, merchant: str = "m1", user: str | None = None) -> Transaction:
    return Transaction(_id(n), user or f"u{n}", f"c{n}", 2500, "EUR", merchant, "5411", "BE", "POS", t)


def _label(
    n: int, fraud: bool, at: int, fraud_type: str | None = None, txn: Transaction | None = None
) -> TopicLabel:
    card = txn.card_id if txn else None
    merchant = txn.merchant_id if txn else None
    when = txn.event_time if txn else None
    return TopicLabel(Label(_id(n), fraud, at, card, merchant, when), fraud_type, "import")


def test_label_as_of_t_is_the_latest_known_then() -> None:
    labels = [
        _label(1, True, T0 + 1 * DAY, "card_testing"),
        _label(1, False, T0 + 3 * DAY),  # an analyst reversed it two days later
        _label(2, True, T0 + 5 * DAY),
    ]
    assert labels_as_of(labels, T0) == {}
    at_2 = labels_as_of(labels, T0 + 2 * DAY)
    assert set(at_2) == {_id(1)} and at_2[_id(1)].label.is_fraud is True
    at_3 = labels_as_of(labels, T0 + 3 * DAY)  # labelled_at == T counts as known
    assert at_3[_id(1)].label.is_fraud is False and _id(2) not in at_3
    at_9 = labels_as_of(labels, T0 + 9 * DAY)
    assert {k: v.label.is_fraud for k, v in at_9.items()} == {_id(1): False, _id(2): True}


def test_label_as_of_t_tie_goes_to_the_record_read_last() -> None:
    labels = [_label(1, True, T0), _label(1, False, T0)]
    assert labels_as_of(labels, T0)[_id(1)].label.is_fraud is False


def test_unknown_labels_are_left_out_not_negatives() -> None:
    txns = [_txn(i, T0 + i * 1000) for i in range(6)]
    known = labels_as_of([_label(0, True, T0, "x"), _label(1, False, T0), _label(2, False, T0)], T0)
    rows = labelled_rows(((t, {}) for t in txns), known, lambda t, _s: [float(t.event_time)])
    assert rows.replayed == 6
    assert rows.labelled == 3
    assert rows.unknown_left_out == 3
    assert rows.data.y.tolist() == [1, 0, 0]
    assert rows.data.x[:, 0].tolist() == [float(T0), float(T0 + 1000), float(T0 + 2000)]
    assert rows.data.fraud_type.tolist() == ["x", "", ""]


def test_a_repeated_event_keeps_its_first_row() -> None:
    txns = [_txn(0, T0), _txn(0, T0 + 5), _txn(1, T0 + 9)]
    known = labels_as_of([_label(0, True, T0), _label(1, False, T0)], T0)
    rows = labelled_rows(((t, {}) for t in txns), known, lambda t, _s: [float(t.event_time)])
    assert rows.duplicates == 1
    assert rows.data.x[:, 0].tolist() == [float(T0), float(T0 + 9)]


def test_no_known_label_or_one_class_is_refused() -> None:
    txns = [_txn(i, T0 + i) for i in range(3)]
    with pytest.raises(TrainingError, match="none of the 3 payments"):
        labelled_rows(((t, {}) for t in txns), {}, lambda _t, _s: [0.0])
    legit_only = labels_as_of([_label(i, False, T0) for i in range(3)], T0)
    with pytest.raises(TrainingError, match=r"all 3 .* legitimate"):
        labelled_rows(((t, {}) for t in txns), legit_only, lambda _t, _s: [0.0])


def _history(until: int, labels: list[TopicLabel], txns: list[Transaction]) -> TopicHistory:
    # Partitions given in reverse so the replay must sort by event time itself.
    payments = [Positioned(t, 1, len(txns) - i) for i, t in enumerate(reversed(txns))]
    return TopicHistory(until, payments, labels, {})


def test_replay_uses_labels_known_at_t_and_unlabelled_payments_still_count() -> None:
    fraud = _txn(0, T0, merchant="m1", user="u")
    unlabelled = _txn(1, T0 + 3600_000, merchant="m2", user="u")  # same user, an hour later
    later = _txn(2, T0 + 10 * DAY, merchant="m1")  # same merchant, ten days later
    other = _txn(3, T0 + 10 * DAY + 1, merchant="m3")
    txns = [fraud, unlabelled, later, other]
    until = T0 + 11 * DAY
    base = [_label(2, False, T0 + 10 * DAY + 5), _label(3, True, T0 + 10 * DAY + 5, "ato")]

    before_t = build_rows(_history(until, [*base, _label(0, True, T0 + DAY, "ato", fraud)], txns))[0]
    after_t = build_rows(_history(until, [*base, _label(0, True, until + 1, "ato", fraud)], txns))[0]

    # Known at T: the fraud is a training row and the merchant's later payment sees it.
    assert before_t.data.y.tolist() == [1, 0, 1]
    assert before_t.unknown_left_out == 1  # the unlabelled payment
    assert before_t.data.x[1, MERCHANT_RATE_30D] > 0
    # Labelled after T: not a row, not a negative, and no feature learned it.
    assert after_t.data.y.tolist() == [0, 1]
    assert after_t.unknown_left_out == 2
    assert after_t.data.x[0, MERCHANT_RATE_30D] == 0


def test_unlabelled_payment_moves_the_stream_state_of_the_next_labelled_one() -> None:
    first = _txn(0, T0, user="u")  # never labelled
    second = _txn(1, T0 + 60_000, user="u")
    third = _txn(2, T0 + 120_000, user="v")
    labels = [_label(1, True, T0 + 1), _label(2, False, T0 + 1)]
    rows = build_rows(_history(T0 + DAY, labels, [first, second, third]))[0]
    count_1h = FEATURE_NAMES.index("txn_count_1h")
    assert rows.data.x[:, count_1h].tolist() == [2.0, 1.0]  # the user's second payment counts the first


def test_card_section_counts_labels() -> None:
    fraud = _txn(0, T0)
    txns = [fraud, _txn(1, T0 + 5), _txn(2, T0 + 9)]
    labels = [_label(0, True, T0 + 2 * DAY, "ato", fraud), _label(1, False, T0 + DAY)]
    history = _history(T0 + 3 * DAY, labels, txns)
    history.labels_after_t = 4
    _rows, section = build_rows(history)
    assert section["known_at_t"] == 2
    assert section["fraud_known_at_t"] == 1
    assert section["unknown_at_t_left_out"] == 1
    assert section["records_after_t_ignored"] == 4
    assert section["by_source"] == {"import": 2}
    assert section["observed_delay_days"] == {"min": 1.0, "median": 1.5, "max": 2.0}


def test_until_parses_iso_with_or_without_offset() -> None:
    assert parse_until("2026-01-01T00:00:00Z") == T0
    assert parse_until("2026-01-01 01:00:00+01:00") == T0
    assert parse_until("2026-01-01T00:00:00") == T0  # no offset: UTC
    assert parse_until(None, now_ms=42) == 42
    with pytest.raises(TrainingError, match="'yesterday'"):
        parse_until("yesterday")


def test_rows_are_in_event_time_order_whatever_the_partition_order() -> None:
    txns = [_txn(i, T0 + i * 1000) for i in range(4)]
    labels = [_label(i, i == 0, T0) for i in range(4)]
    rows = build_rows(_history(T0 + DAY, labels, txns))[0]
    assert np.all(np.diff(rows.data.event_time) > 0)


def test_a_window_keeps_rows_from_its_start_but_replays_the_payments_before_it() -> None:
    txns = [_txn(i, T0 + i * DAY, user="u") for i in range(4)]
    labels = [_label(i, i % 2 == 0, T0) for i in range(4)]
    rows = build_rows(_history(T0 + 9 * DAY, labels, txns), since_ms=T0 + 2 * DAY)[0]
    assert rows.data.event_time.tolist() == [T0 + 2 * DAY, T0 + 3 * DAY]
    user_count_30d = FEATURE_NAMES.index("user_count_30d")
    assert rows.data.x[:, user_count_30d].tolist() == [2.0, 3.0]  # the earlier days are in the state
