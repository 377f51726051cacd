"""``make faults``: the fault suite on a private real stack.

Starts Kafka, the registry and Redis on free ports in ``.stack/faults`` (so it never touches
``make up``'s stack), the scoring service behind a fault proxy, and runs each scenario in each of
its delivery modes on fresh topics. Writes ``faults/results/latest.json`` and ``latest.md`` and
prints the table. Exit status 1 when a row does not hold.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from tqdm import tqdm

from deploy.local.processes import ensure_model
from deploy.local.stack import REPO_ROOT, Stack, StackConfig, free_port
from faults.rig import Rig, Row, markdown, merged_with_previous, write_results
from faults.scenarios import SCENARIOS, Load
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.model_folder import LIVE_POINTER, read_pointer, write_pointer
from fraud_core.registry import RegistryClient
from fraud_core.topics import COMPATIBILITY

RESULTS = Path(__file__).parent / "results"


def models(work: Path) -> Path:
    """A model folder with a LIVE version and a second, unpromoted one (for the promotion scenario)."""
    target = work / "models"
    source = REPO_ROOT / "models"
    live = read_pointer(source, LIVE_POINTER) if source.exists() else None
    if live is not None:
        shutil.copytree(source / live, target / live)
        write_pointer(target, LIVE_POINTER, live)
    else:
        ensure_model(target, events=60_000, seed=7)
    cmd = [sys.executable, "-m", "inference_service.training", "--no-promote", "--seed", "8"]
    cmd += ["--events", "40000", "--model-dir", str(target)]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return target


class FaultsCli(BaseSettings):
    __doc__ = (
        "Run the fault suite against a private real stack and write faults/results/latest.json and "
        f"latest.md. Scenarios: {', '.join(SCENARIOS)}. {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "make faults",
            {
                "FAULTS_SCENARIO": "scenario",
                "FAULTS_DELIVERY": "delivery",
                "FAULTS_AFTER_S": "after-s",
                "FAULTS_RATE": "rate",
                "FAULTS_OUTAGE_S": "outage-s",
            },
        ),
        frozen=True,
        case_sensitive=True,
    )

    FAULTS_SCENARIO: list[str] = Field(
        default_factory=list, description="Run only these scenarios (repeatable); unset: all."
    )
    FAULTS_DELIVERY: Literal["at-least-once", "exactly-once"] | None = Field(
        None, description="Run only this delivery mode; unset: each scenario's modes."
    )
    FAULTS_AFTER_S: float = Field(Load.after_s, ge=0, description="Seconds of streaming after each repair.")
    FAULTS_RATE: float = Field(Load.rate_eps, gt=0, description="Events per second.")
    FAULTS_OUTAGE_S: float = Field(Load.outage_s, gt=0, description="How long each fault lasts, in seconds.")

    @field_validator("FAULTS_SCENARIO")
    @classmethod
    def _known_scenarios(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ValueError(
                f"unknown scenario {', '.join(map(repr, unknown))}; one of {', '.join(SCENARIOS)}"
            )
        return names

    def plan(self) -> list[tuple[str, str]]:
        """(scenario, delivery) pairs to run, in the suite's order."""
        return [
            (name, delivery)
            for name, (_fn, deliveries) in SCENARIOS.items()
            if not self.FAULTS_SCENARIO or name in self.FAULTS_SCENARIO
            for delivery in deliveries
            if not self.FAULTS_DELIVERY or delivery == self.FAULTS_DELIVERY
        ]


def main(argv: list[str] | None = None) -> int:
    args = parse_settings(FaultsCli, argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load = Load(rate_eps=args.FAULTS_RATE, outage_s=args.FAULTS_OUTAGE_S, after_s=args.FAULTS_AFTER_S)
    plan = args.plan()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    work = REPO_ROOT / ".stack" / "faults" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    config = StackConfig(
        state_dir=work / "stack",
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        redis_port=free_port(),
    )
    stack = Stack(config)
    rows: list[Row] = []
    rig: Rig | None = None
    try:
        print(f"starting a private stack and the scoring service in {work.relative_to(REPO_ROOT)} ...")
        for svc in stack.services:
            stack.start(svc)
        RegistryClient(config.registry_url).set_compatibility(COMPATIBILITY)
        rig = Rig(stack, models(work), work, "faults-" + uuid.uuid4().hex)
        rig.start_service()
        with tqdm(plan, unit="scenario", desc="faults", dynamic_ncols=True) as bar:
            for name, delivery in bar:
                bar.set_postfix_str(f"{name} {delivery}")
                t0 = time.monotonic()
                try:
                    row = SCENARIOS[name][0](rig, delivery, load)
                except Exception as exc:
                    logging.exception("scenario %s (%s) failed to run", name, delivery)
                    first_line = (str(exc).splitlines() or [repr(exc)])[0]
                    row = Row(name, delivery, 0, 0, 0, 0, 0, 0, None, False, f"did not run: {first_line}")
                    if rig.service is None or not rig.service.alive:
                        rig.start_service()
                for svc in stack.services:  # whatever a scenario left down comes back
                    stack.start(svc)
                rows.append(row)
                tqdm.write(
                    f"{name:<17} {delivery:<14} in {row.events_in:>5} out {row.decisions_out:>5} "
                    f"lost {row.lost} dup {row.duplicates} dlq {row.dead_letters} degraded {row.degraded} "
                    f"recovery {row.recovery_s} after-repair {row.events_after_repair} holds {row.holds} "
                    f"({time.monotonic() - t0:.0f}s); fault: {row.fault_observed or 'NOT OBSERVED'}"
                )
    except KeyboardInterrupt:
        print("interrupted: writing the rows so far", file=sys.stderr)
    finally:
        if rig is not None:
            rig.close()
        stack.down()
    if args.FAULTS_SCENARIO or args.FAULTS_DELIVERY:
        rows = merged_with_previous(rows, RESULTS / "latest.json")
    json_path, md_path = write_results(rows, started_at, RESULTS)
    print()
    print(markdown(rows, started_at))
    print(f"written to {json_path.relative_to(REPO_ROOT)} and {md_path.relative_to(REPO_ROOT)}")
    return 0 if rows and all(r.holds for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
