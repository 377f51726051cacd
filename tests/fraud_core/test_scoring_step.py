"""Pure logic of the shared steps: decision records fit their schema without the encoder's check,
transactions survive the job's operator hop, and the embedded-interpreter check names what is missing."""

from __future__ import annotations

import marshal

import fastavro
import pytest

import schemas
from flink_jobs.scoring_job import check_embedded_imports, embedded_pythonpath
from fraud_core.decision import ScoreResult, decide
from fraud_core.exceptions import ConfigError
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.rules import load_rules
from fraud_core.scoring_client import fallback
from fraud_core.transaction import Transaction
from tests.records import transaction

TXN = transaction(card_id="c-1", amount_minor=12_345, channel="ecom", event_time=1_700_000_000_000)
FEATURES = dict.fromkeys(FEATURE_NAMES, 1.0)


@pytest.mark.parametrize(
    ("result", "blocked", "enrichment_degraded"),
    [
        (ScoreResult(0.9, 0.5, "hgb-1", ["many payments within one minute"]), False, False),
        (ScoreResult(0.1, 0.5, "hgb-1", [], shadow_score=0.2, shadow_model_version="hgb-2"), False, False),
        (ScoreResult(0.1, 0.5, "hgb-1", []), True, False),
        (ScoreResult(0.95, 0.5, "hgb-1", [], block_threshold=0.9), False, False),
        (fallback(FEATURES), False, True),
    ],
)
def test_decision_records_fit_the_schema_they_are_encoded_with_unchecked(
    result: ScoreResult, blocked: bool, enrichment_degraded: bool
) -> None:
    # ScoringStep encodes decisions with validate=False; this is the check it relies on.
    record = decide(TXN, FEATURES, result, blocked, enrichment_degraded, 1_700_000_000_123, load_rules())
    assert fastavro.validation.validate(record, schemas.load(schemas.DECISION), raise_errors=True)


def test_transaction_fields_rebuild_the_transaction_through_marshal() -> None:
    assert Transaction(*marshal.loads(marshal.dumps(TXN.fields()))) == TXN
    assert Transaction(*TXN.fields()).to_record() == TXN.to_record()


@pytest.mark.integration  # starts the embedded interpreter's Python twice
def test_embedded_import_check_passes_with_the_project_path_and_names_what_is_missing() -> None:
    check_embedded_imports(embedded_pythonpath())
    with pytest.raises(ConfigError) as caught:
        check_embedded_imports("")
    message = str(caught.value)
    assert "pemja" in message and "python.pythonpath" in message and "make install" in message


def test_linger_grows_with_the_input_rate_and_stays_within_its_bounds() -> None:
    from flink_jobs.operators import Linger

    linger = Linger(min_ms=4, max_ms=20)
    assert linger.delay_ms() == 4  # nothing seen yet: leave fast
    now = 0
    for _ in range(50):  # one event every 10 ms: 100 events/s
        now += 10
        linger.flushed(1, now)
    slow = linger.delay_ms()
    for _ in range(50):  # 60 events every 20 ms: 3,000 events/s
        now += 20
        linger.flushed(60, now)
    fast = linger.delay_ms()
    # The documented rule, worked out by hand for the two steady rates: 4 ms plus 4 ms per 1,000
    # events/s; 100 events/s -> 4.4 ms, rounded to 4; 3,000 events/s -> 4 + 12 = 16 ms.
    assert linger.rate_eps == pytest.approx(3000, rel=1e-3)
    assert (slow, fast) == (4, 16)
    for _ in range(50):  # 100,000 events/s: capped
        now += 1
        linger.flushed(100, now)
    assert linger.delay_ms() == 20
