"""Scoring benchmark: in-process rows/s at batch 1/64/512, and the HTTP service's single-request
latency at a fixed rate and batch-512 throughput.

``python -m bench.score_bench [--model-dir models] [--rate 200] [--seconds 10]``

Rows are real simulator events (a seed the model was not trained on) replayed through the shared
feature code, so the fraud share, and with it the reason-code work, is realistic. The HTTP part
starts ``python -m inference_service`` on a free port with one uvicorn worker. Figures go to
stdout as a table and to ``bench/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from fraud_core.decision import scoring_request
from fraud_core.features import FEATURE_NAMES
from fraud_core.settings import DEV_API_KEY
from inference_service.api.payloads import ScoreItem
from inference_service.metrics import Metrics
from inference_service.model_registry import LIVE_POINTER, ActiveModels, load_model, read_pointer
from inference_service.scoring import score_items, to_matrix
from inference_service.training.train import replay
from producers.simulator import SimConfig, Simulator

RESULTS = Path(__file__).parent / "results" / "scoring.json"


def sample_items(n_events: int, seed: int) -> list[dict[str, Any]]:
    """Request items for ``n_events`` simulator events, features computed by the shared code."""
    sim = Simulator(SimConfig(seed=seed, n_users=2000))
    events = list(sim.events(count=n_events))
    data = replay(events, sim.profiles())
    return [
        scoring_request(ev.txn, dict(zip(FEATURE_NAMES, row, strict=True)))
        for ev, row in zip(events, data.x.tolist(), strict=True)
    ]


def in_process(models: ActiveModels, items: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Rows/s of the model alone and of the full scoring step (validated items -> response dicts)."""
    validated = [ScoreItem.model_validate(i) for i in items]
    metrics = Metrics()
    out: dict[str, Any] = {}
    for batch in (1, 64, 512):
        chunks = [validated[i : i + batch] for i in range(0, len(validated) - batch + 1, batch)]
        matrices = [to_matrix(c) for c in chunks]
        runs = {
            "score_items": lambda k, c=chunks: score_items(models, c[k % len(c)], metrics),
            "predict_only": lambda k, m=matrices: models.live.predict(m[k % len(m)]),
        }
        for label, fn in runs.items():
            rows = 0
            k = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn(k)
                rows += batch
                k += 1
            out.setdefault(label, {})[str(batch)] = round(rows / (time.perf_counter() - start))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(model_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "SCORING_PORT": str(port),
        "APP_ENV": "local",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "inference_service"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the scoring service did not become ready within 60 s")


def http_single(
    client: httpx.Client, items: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    """Open loop, one request every 1/rate s; latency counts from the scheduled send time."""
    bodies = [orjson.dumps(i) for i in items]
    for b in bodies[:200]:  # warm-up
        client.post("/v1/score", content=b)
    n = int(rate * seconds)
    latencies = []
    start = time.perf_counter()
    for k in range(n):
        scheduled = start + k / rate
        while (now := time.perf_counter()) < scheduled:
            if scheduled - now > 0.002:
                time.sleep(scheduled - now - 0.001)
        r = client.post("/v1/score", content=bodies[k % len(bodies)])
        r.raise_for_status()
        latencies.append((time.perf_counter() - scheduled) * 1000)
    elapsed = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "requests": n,
        "offered_rps": rate,
        "achieved_rps": round(n / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p95": round(float(np.percentile(lat, 95)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3),
            "max": round(float(lat.max()), 3),
        },
    }


def http_batch(
    client: httpx.Client, items: list[dict[str, Any]], batch: int, seconds: float
) -> dict[str, Any]:
    """Closed loop, one client: back-to-back batch requests of ``batch`` rows."""
    bodies = [orjson.dumps({"items": items[i : i + batch]}) for i in range(0, len(items) - batch + 1, batch)]
    for b in bodies[:5]:
        client.post("/v1/score/batch", content=b)
    rows = 0
    per_request = []
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        r = client.post("/v1/score/batch", content=bodies[k % len(bodies)])
        r.raise_for_status()
        per_request.append((time.perf_counter() - t0) * 1000)
        rows += batch
        k += 1
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "requests": k,
        "rows_per_s": round(rows / elapsed),
        "request_ms_median": round(statistics.median(per_request), 3),
        "body_bytes": len(bodies[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--rate", type=float, default=200.0, help="single-request rate, req/s (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each HTTP run (default 10)")
    parser.add_argument("--events", type=int, default=20_000, help="simulator events for sample rows")
    args = parser.parse_args()

    version = read_pointer(args.model_dir, LIVE_POINTER)
    if version is None:
        sys.exit(f"no {args.model_dir}/LIVE: train a model first (make model)")
    models = ActiveModels(load_model(args.model_dir, version), None)
    items = sample_items(args.events, seed=11)

    inproc = in_process(models, items, seconds=2.0)
    port = free_port()
    proc = start_service(args.model_dir, port)
    try:
        headers = {
            "X-API-Key": os.environ.get("SCORING_API_KEY", DEV_API_KEY),
            "Content-Type": "application/json",
        }
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
            single = http_single(client, items, args.rate, args.seconds)
            batch = http_batch(client, items, 512, args.seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    result = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "model_version": version,
        "in_process_rows_per_s": inproc,
        "http_single": single,
        "http_batch_512": batch,
        "goals": {"single_p50_ms": 2, "single_p99_ms": 10, "batch_512_rows_per_s": 50_000},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"model {version}")
    print(f"{'measure':<44}{'value':>14}")
    for label, table in inproc.items():
        for b, v in table.items():
            print(f"{'in-process ' + label + ' batch ' + b + ' (rows/s)':<44}{v:>14,}")
    lat = single["latency_ms"]
    print(f"{'HTTP single @' + str(args.rate) + ' req/s p50 / p99 (ms)':<44}{lat['p50']:>7} / {lat['p99']}")
    print(f"{'HTTP single achieved req/s':<44}{single['achieved_rps']:>14}")
    print(f"{'HTTP batch-512 (rows/s)':<44}{batch['rows_per_s']:>14,}")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
