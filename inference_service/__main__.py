"""``python -m inference_service``: serve the scoring API with uvicorn on SCORING_HOST:SCORING_PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from fraud_core.settings import settings_errors
from inference_service.core.config import Settings
from inference_service.core.logging import configure_logging
from inference_service.main import create_app


def main() -> int:
    """Read the settings from the environment, configure JSON logs, and run one uvicorn worker."""
    try:
        settings = Settings()
    except ValidationError as exc:
        configure_logging("INFO")
        # Messages only: a refused key must not reach the log.
        logging.getLogger(__name__).error("invalid settings: %s", settings_errors(exc))
        return 2
    configure_logging(settings.LOG_LEVEL)
    uvicorn.run(
        create_app(settings),
        host=settings.SCORING_HOST,
        port=settings.SCORING_PORT,
        # Named, not "auto": without uvloop and httptools uvicorn would quietly fall back to the
        # pure-Python asyncio loop and h11 parser, several times the CPU per request.
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
