"""Rules in the running job: a card-testing burst from users with no stored profile is flagged by
the rules on any channel, MCC and currency; the rules file is reloaded without a restart."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import schemas
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher
from fraud_core.reference import CURRENCIES
from fraud_core.rules import DEFAULT_RULES_FILE
from fraud_core.transaction import Transaction
from tests.flink_jobs.test_resilience import Collector

pytestmark = [pytest.mark.integration, pytest.mark.flink]

T0 = 1_767_225_600_000
BURST = 10
EXTRA_RULE = """
[[sets.always]]
id = "test_round_amount"
action = "REVIEW"
reason = "exactly 777.77 in any currency (test rule)"
when = [{ field = "amount_minor", op = "==", value = 77777 }]
"""


def _burst(user: str, channel: str, mcc: str, currency: str) -> list[Transaction]:
    """About 1 EUR at a different merchant every 3 seconds, by a user Redis knows nothing of."""
    exponent, rate = CURRENCIES[currency]
    amount = max(1, round(1.0 / rate * 10**exponent))
    return [
        Transaction(
            event_id=str(uuid.uuid4()),
            user_id=user,
            card_id=f"card_{user}",
            amount_minor=amount,
            currency=currency,
            merchant_id=f"merch_{uuid.uuid4().hex[:8]}",
            merchant_category=mcc,
            country="FR",
            channel=channel,
            event_time=T0 + 3000 * i,
            device_id=f"dev_{user}" if channel != "POS" else None,
        )
        for i in range(BURST)
    ]


def _send(publisher: AvroPublisher, topic: str, txns: list[Transaction]) -> None:
    for txn in txns:
        publisher.send(topic, schemas.TRANSACTION, txn.user_id, txn.to_record(), new_headers())
    publisher.flush()


def test_burst_without_profile_is_flagged_and_rules_reload_without_restart(
    stack: Any, job_topics: Any, run_job: Any, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(DEFAULT_RULES_FILE.read_text())
    topics = job_topics()
    job = run_job(topics, env={"RULES_FILE": str(rules_file)})
    collector = Collector(stack, [topics.flagged, topics.approved])
    publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
    try:
        kinds = [
            ("ECOM", "5816", "EUR"),
            ("POS", "5411", "JPY"),
            ("MOBILE", "4111", "GBP"),
            ("ATM", "6011", "INR"),
        ]
        bursts = [_burst(f"nobody_{uuid.uuid4().hex[:10]}", *kind) for kind in kinds]
        for txns in bursts:
            _send(publisher, topics.input, txns)
        ids = {t.event_id for txns in bursts for t in txns}
        decided = collector.wait_for(ids, timeout_s=240)
        first_version = None
        for txns in bursts:
            got = [decided[t.event_id] for t in txns]
            assert all(d["features"]["profile_missing"] == 1.0 for d in got)
            # From the 5th payment on, the burst rule blocks, whatever the model says.
            for d in got[4:]:
                assert d["decision"] == "FLAGGED" and d["action"] == "BLOCK", d
                assert "card_testing_burst" in d["rules_fired"], d["rules_fired"]
            first_version = got[-1]["rules_version"]
        assert first_version and first_version.startswith("2026-")

        # Hot reload: add a rule to the file the running job watches; no restart.
        rules_file.write_text(
            re.sub(
                r'^version = ".*"$',
                'version = "test-reload"',
                DEFAULT_RULES_FILE.read_text(),
                count=1,
                flags=re.M,
            )
            + EXTRA_RULE
        )
        deadline = time.monotonic() + 120
        while True:
            probe = dataclasses.replace(
                _burst(f"probe_{uuid.uuid4().hex[:8]}", "POS", "5411", "EUR")[0], amount_minor=77777
            )
            _send(publisher, topics.input, [probe])
            record = collector.wait_for({probe.event_id}, timeout_s=60)[probe.event_id]
            if record["rules_version"].startswith("test-reload+"):
                break
            assert time.monotonic() < deadline, "the job did not pick up the changed rules file"
            time.sleep(1.0)
        assert record["rules_fired"] == ["test_round_amount"] and record["decision"] == "FLAGGED"
        assert job.alive
    finally:
        collector.close()
