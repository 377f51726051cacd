"""A labelled card-payment history made by synccfd, a generator we did not write (PyPI, MIT), for
``make import`` with ``examples/synccfd.toml``, the documentation and the tests.

``python examples/synccfd_generate.py --customers 500 --terminals 1000 --days 30 --seed 7 --out data/h.parquet``
writes the transactions (the Fraud Detection Handbook's columns: TRANSACTION_ID, TX_DATETIME,
CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TYPE, TX_FRAUD, TX_FRAUD_SCENARIO, ...) as Parquet or CSV
by the suffix of ``--out``. synccfd is in the ``dev`` extra (``pip install synccfd==0.1.0``).
"""

from __future__ import annotations

import contextlib
import sys
from datetime import date
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from fraud_core.cli import cli_config, fail, parse_settings


class GenerateCli(BaseSettings):
    """Generate a labelled history with synccfd's DatasetGenerator (same flags, same file)."""

    model_config = cli_config("python examples/synccfd_generate.py", {})

    customers: int = Field(500, ge=1, description="Customers (card holders).")
    terminals: int = Field(1000, ge=1, description="Terminals (merchants).")
    days: int = Field(30, ge=1, description="Days of transactions.")
    start_date: date = Field(date(2025, 1, 1), description="First day (YYYY-MM-DD).")
    seed: int = Field(7, ge=0, description="synccfd's random_state: same seed, same file.")
    out: Path = Field(description="Output file: .parquet or .csv.")


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(GenerateCli, argv)
    if settings.out.suffix.lower() not in (".parquet", ".csv"):
        fail(f"--out {settings.out}: the suffix must be .parquet or .csv")
    try:
        from synccfd import DatasetGenerator
    except ImportError:
        fail("synccfd is not installed: .venv/bin/pip install synccfd==0.1.0 (or pip install -e '.[dev]')")
    generator = DatasetGenerator(
        n_customers=settings.customers,
        n_terminals=settings.terminals,
        nb_days=settings.days,
        start_date=settings.start_date.isoformat(),
        random_state=settings.seed,
    )
    with contextlib.redirect_stdout(sys.stderr):  # synccfd prints its progress; stdout stays ours
        _customers, _terminals, transactions = generator.generate()
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    if settings.out.suffix.lower() == ".parquet":
        transactions.to_parquet(settings.out, index=False)
    else:
        transactions.to_csv(settings.out, index=False)
    frauds = int(transactions["TX_FRAUD"].sum())
    print(f"wrote {len(transactions)} transactions ({frauds} fraudulent) to {settings.out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
