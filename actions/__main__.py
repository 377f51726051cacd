"""``python -m actions`` (``make consumers``): run the action consumers in the foreground.

The flags are generated from :class:`~actions.settings.ConsumerSettings` (``--help``); each falls
back to its environment variable, then to the local default. SIGINT/SIGTERM finish the current record, commit and exit 0. Exit codes: 0 stopped,
1 failure (a dependency missing at start, a fatal Kafka error), 2 invalid setting.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from fraud_core.cli import ENV_NOTE, cli_config, fail, parse_settings
from fraud_core.exceptions import FraudPipelineError

log = logging.getLogger("actions")


class ActionsCli(ConsumerSettings):
    __doc__ = (
        "Act on fraud decisions: block flagged cards, notify, raise risk tiers, learn profiles from "
        "approvals, audit every action to the actions topic. Metrics on /metrics. Booleans take "
        f"true or false. {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m actions",
        {
            "KAFKA_BOOTSTRAP_SERVERS": "bootstrap-servers",
            "SCHEMA_REGISTRY_URL": "registry-url",
            "REDIS_URL": "redis-url",
            "FLAGGED_TOPIC": "flagged-topic",
            "APPROVED_TOPIC": "approved-topic",
            "ACTIONS_TOPIC": "actions-topic",
            "DLQ_TOPIC": "dlq-topic",
            "GROUP_ID": "group-id",
            "AUTO_OFFSET_RESET": "auto-offset-reset",
            "ACTIONS_METRICS_PORT": "metrics-port",
            "NOTIFY_WEBHOOK_URL": "notify-webhook-url",
            "NOTIFY_TIMEOUT_S": "notify-timeout-s",
            "BLOCK_TTL_S": "block-ttl-s",
            "IDEMPOTENCY_TTL_S": "idempotency-ttl-s",
            "AUDIT_PROFILE_UPDATES": "audit-profile-updates",
            "BATCH_MAX": "batch-max",
            "LOG_LEVEL": "log-level",
        },
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(ActionsCli, argv)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "%s received: finishing the current record, then committing and closing",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        ActionConsumer(settings).run(stop)
    except FraudPipelineError as exc:
        fail(str(exc), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
