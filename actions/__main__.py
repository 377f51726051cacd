"""``python -m actions`` (``make consumers``): run the action consumers in the foreground.

The flags are generated from :class:`~actions.settings.ConsumerSettings` (``--help``); each falls
back to its environment variable, then to the local default. SIGINT/SIGTERM finish the current record, commit and exit 0. Exit codes: 0 stopped,
1 failure (a dependency missing at start, a fatal Kafka error), 2 invalid setting.
"""

from __future__ import annotations

import logging
import sys

from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.service import run_service

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
            "NOTIFY_MAX_ATTEMPTS": "notify-max-attempts",
            "NOTIFY_RETRY_BASE_S": "notify-retry-base-s",
            "NOTIFY_RETRY_MAX_S": "notify-retry-max-s",
            "BLOCK_TTL_S": "block-ttl-s",
            "IDEMPOTENCY_TTL_S": "idempotency-ttl-s",
            "AUDIT_PROFILE_UPDATES": "audit-profile-updates",
            "BATCH_MAX": "batch-max",
            "LOG_LEVEL": "log-level",
        },
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(ActionsCli, argv)
    return run_service(
        lambda: ActionConsumer(settings),
        settings.LOG_LEVEL,
        log,
        "finishing the current record, then committing and closing",
    )


if __name__ == "__main__":
    sys.exit(main())
