"""``python -m bench.monitor_bench``: the drift monitor's CPU cost per decision, offline.

Replays a simulated stream through the shared feature code, scores it with the live model of
``--model-dir`` and encodes each decision as the job writes it (Avro, Confluent framing); then
times, per decision, what the monitor does with it: decode, bin into the window (batches of
``--batch``), and compute PSI and JS distance for every variable once per ``--publish-every``
decisions (once a second at that many decisions per second). Prints one JSON line. Kafka's own
fetch cost is not included; the live monitor measures everything as ``fraud_drift_cpu_seconds``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import schemas
from fraud_core import avro
from fraud_core.cli import ENV_NOTE, cli_config, fail, parse_settings
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_folder import LIVE_POINTER, load_estimator, read_card, read_pointer
from fraud_core.simulator import SimConfig, Simulator
from inference_service.training.train import replay
from monitoring.reference import parse_card
from monitoring.tracker import DriftTracker


class MonitorBenchCli(BaseSettings):
    __doc__ = (
        "The drift monitor's CPU cost per decision, offline: decode, windowing and PSI/JS of the live "
        f"model's decisions on a simulated stream; prints one JSON line. {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "python -m bench.monitor_bench",
            {
                "MODEL_DIR": "model-dir",
                "MONITOR_BENCH_EVENTS": "events",
                "MONITOR_BENCH_BATCH": "batch",
                "MONITOR_BENCH_PUBLISH_EVERY": "publish-every",
            },
        ),
        frozen=True,
        case_sensitive=True,
    )

    MODEL_DIR: Path = Field(Path("models"), description="Model registry folder (its LIVE model is used).")
    MONITOR_BENCH_EVENTS: int = Field(20_000, ge=1, description="Decisions to time.")
    MONITOR_BENCH_BATCH: int = Field(500, ge=1, description="Decisions per poll.")
    MONITOR_BENCH_PUBLISH_EVERY: int = Field(1000, ge=1, description="Decisions per gauge update.")


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(MonitorBenchCli, argv)
    model_dir, events = settings.MODEL_DIR, settings.MONITOR_BENCH_EVENTS
    batch_size, publish_every = settings.MONITOR_BENCH_BATCH, settings.MONITOR_BENCH_PUBLISH_EVERY
    version = read_pointer(model_dir, LIVE_POINTER)
    if version is None:
        fail(f"--model-dir {model_dir}: no LIVE model there; run `make model`")
    card = read_card(model_dir, version)
    model = load_estimator(model_dir, version)
    sim = Simulator(SimConfig(seed=11))
    data = replay(sim.events(count=events), sim.profiles())
    scores = model.predict_proba(data.x)[:, 1]
    schema = schemas.load(schemas.DECISION)
    encoded = [
        avro.encode(
            1,
            schema,
            {
                "event_id": f"e{i}",
                "user_id": "u",
                "decision": "FLAGGED" if s >= card.threshold else "APPROVED",
                "score": float(s),
                "threshold": card.threshold,
                "model_version": version,
                "reasons": [],
                "degraded": False,
                "features": dict(zip(FEATURE_NAMES, map(float, row), strict=True)),
                "event_time": 0,
                "decided_at": 0,
            },
        )
        for i, (row, s) in enumerate(zip(data.x, scores, strict=True))
    ]
    reference = parse_card(card.to_json(), FEATURE_NAMES)
    tracker = DriftTracker(FEATURE_NAMES, 2000, lambda _v: reference, label_delay_ms=0)
    timings = {"decode": 0.0, "window": 0.0, "drift": 0.0}
    published = 0
    for start in range(0, len(encoded), batch_size):
        t0 = time.process_time()
        batch = [avro.decode(v, lambda _id: schema, schema) for v in encoded[start : start + batch_size]]
        t1 = time.process_time()
        tracker.observe(batch)
        t2 = time.process_time()
        timings["decode"] += t1 - t0
        timings["window"] += t2 - t1
        while published + publish_every <= start + len(batch):
            t3 = time.process_time()
            tracker.readings(1)
            timings["drift"] += time.process_time() - t3
            published += publish_every
    n = len(encoded)
    result = {
        "decisions": n,
        "us_per_decision": {k: round(v / n * 1e6, 2) for k, v in timings.items()},
        "total_us_per_decision": round(sum(timings.values()) / n * 1e6, 2),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
