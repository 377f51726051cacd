"""``python -m monitoring`` (``make monitor``): the drift monitor in the foreground.

Consumes the decision topics with a group of its own, compares a sliding window of each model
version's decisions with the reference distributions in its model card, and serves the result
as Prometheus gauges (``fraud_feature_psi``, ``fraud_score_psi``, Jensen-Shannon distances, flag
rate, missing-profile rate). The flags are generated from
:class:`~monitoring.settings.MonitorSettings` (``--help``); each falls back to its environment
variable, then to the local default. The API key comes only from SCORING_API_KEY in the
environment. SIGINT/SIGTERM stop it cleanly. Exit codes: 0 stopped, 1 failure (a fatal Kafka
error), 2 invalid setting.
"""

from __future__ import annotations

import logging
import sys

from pydantic import SecretStr
from pydantic_settings import CliSuppress

from fraud_core.cli import ENV_NOTE, cli_config, lower_case_flags, parse_settings
from fraud_core.service import run_service
from monitoring.monitor import DriftMonitor
from monitoring.settings import MonitorSettings

log = logging.getLogger("monitoring")


class MonitorCli(MonitorSettings):
    __doc__ = (
        "Watch the decision topics for drift against each model's training reference (PSI and "
        f"Jensen-Shannon distance per feature and for the score), served as Prometheus gauges. {ENV_NOTE}"
    )

    model_config = cli_config("python -m monitoring", lower_case_flags(MonitorSettings))

    # Not flags: Redis is unused, and a secret on the command line would show in the process list.
    REDIS_URL: CliSuppress[str] = "redis://localhost:6379/0"
    REDIS_USERNAME: CliSuppress[str | None] = None
    REDIS_PASSWORD: CliSuppress[SecretStr | None] = None


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(MonitorCli, argv)
    return run_service(lambda: DriftMonitor(settings), settings.LOG_LEVEL, log, "stopping")


if __name__ == "__main__":
    sys.exit(main())
