"""Issue 22 §10: each `make demo` run starts from a clean slate. Unit tests of what makes a run its
own (no processes); the two runs themselves are compared with `make demo`."""

from __future__ import annotations

import re

import pytest

from actions.settings import ConsumerSettings
from deploy.local.demo import DEMO_REDIS_DB, DemoRun, clear_demo_database
from flink_jobs.settings import JobSettings
from fraud_core.simulator import SimConfig, Simulator
from monitoring.settings import MonitorSettings
from producers.produce import ProduceCli


def test_two_runs_share_no_consumer_group_and_no_simulated_id() -> None:
    first, second = DemoRun.fresh(), DemoRun.fresh()
    assert first.run_id != second.run_id
    for env in ("job_env", "consumers_env", "monitor_env"):
        assert getattr(first, env)()["GROUP_ID"] != getattr(second, env)()["GROUP_ID"]

    def ids(run: DemoRun) -> set[str]:
        salt = ProduceCli(_cli_parse_args=["--count", "1", *run.producer_args()]).PRODUCER_ID_SALT
        events = Simulator(SimConfig(seed=7, n_users=300, id_salt=salt)).events(count=2000)
        return {i for e in events for i in (e.txn.user_id, e.txn.card_id, e.txn.merchant_id)}

    assert ids(first).isdisjoint(ids(second))


def test_the_deployables_accept_the_run_settings_and_read_from_the_end() -> None:
    run = DemoRun("ab12cd34")
    job = JobSettings(**run.job_env())  # type: ignore[arg-type]
    assert (job.GROUP_ID, job.START_FROM) == ("fraud-demo-ab12cd34-job", "latest")
    consumers = ConsumerSettings(**run.consumers_env())  # type: ignore[arg-type]
    assert (consumers.GROUP_ID, consumers.AUTO_OFFSET_RESET) == ("fraud-demo-ab12cd34-actions", "latest")
    monitor = MonitorSettings(**run.monitor_env())  # type: ignore[arg-type]
    assert monitor.AUTO_OFFSET_RESET == "latest" and monitor.GROUP_ID.endswith("-drift-monitor")


def test_the_demo_uses_and_empties_only_its_own_redis_database() -> None:
    run = DemoRun("ab12cd34")
    assert run.redis_url("redis://127.0.0.1:6379/0") == f"redis://127.0.0.1:6379/{DEMO_REDIS_DB}"
    assert run.redis_url("redis://h:7000/3") == f"redis://h:7000/{DEMO_REDIS_DB}"
    with pytest.raises(ValueError, match="database number"):
        run.redis_url("redis://127.0.0.1:6379")
    with pytest.raises(ValueError, match=re.escape("refusing to empty redis://127.0.0.1:6379/0")):
        clear_demo_database("redis://127.0.0.1:6379/0")
