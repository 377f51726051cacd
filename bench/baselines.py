"""What the two baseline consumers share: their entry point (logging, settings from the environment)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flink_jobs.settings import JobSettings


def main(run: Callable[[JobSettings], None]) -> int:
    """Run a baseline with the job's settings (the same environment variables as the job)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(JobSettings())
    return 0
