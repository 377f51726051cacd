"""Scoring benchmark: in-process rows/s at batch 1/64/512, the HTTP service's single-request
latency at a fixed rate and batch-512 throughput, and the cost per row of ``POST /v1/score/batch``
through the stream job's own client (:class:`fraud_core.scoring_client.BatchScorer`) at the batch
sizes the job sends.

``python -m bench.score_bench [--model-dir models] [--rate 200] [--seconds 10]``
``python -m bench.score_bench --client-only``  (only the BatchScorer table)
``python -m bench.score_bench --client-only --compare-ref HEAD``  (this tree against a commit)
``python -m bench.score_bench --clients-only``  (only the HTTP client comparison at batch 64)

The BatchScorer table gives, per batch size, the wall time per row (one client, back to back),
and the CPU time per row of the client process and of the service process (``/proc/<pid>/stat``),
since on a loaded machine CPU is what a request really costs. Each figure is the median of
``--rounds`` runs. The client runs in a process of its own, so ``--compare-ref`` can run another
commit's service *and* client: the commit is checked out in a temporary ``git worktree`` and the
two systems take turns, batch size by batch size, so both see the same machine load.

The client comparison runs :class:`~fraud_core.scoring_client.BatchScorer` at batch 64 over each
HTTP transport (the hand-written raw-socket one, httpx's keep-alive ``Client``, urllib3's
``PoolManager``), each with the JSON body and with the binary columnar one, taking turns round by
round against one service: the figures that decide which client the scoring path keeps (issue 26:
the hand-written one only if at least 20 % cheaper per row than the best library). Written to
``bench/results/scoring_clients.json`` under ``clients_batch64``.

Rows are real simulator events (a seed the model was not trained on) replayed through the shared
feature code, so the fraud share, and with it the reason-code work, is realistic. The HTTP part
starts ``python -m inference_service`` on a free port with one uvicorn worker. Figures go to
stdout as a table and to ``bench/results/scoring.json`` (``scoring_clients.json`` with
``--client-only``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import urllib3
from pydantic import Field, SecretStr
from pydantic_settings import CLI_SUPPRESS, BaseSettings, CliToggleFlag, SettingsConfigDict

from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.decision import scoring_request
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_folder import LIVE_POINTER, read_pointer
from fraud_core.scoring_client import BatchScorer, Encoding, RawSocketTransport, TransportFactory
from fraud_core.settings import DEV_API_KEY
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.transaction import Transaction
from inference_service.api.payloads import ScoreItem
from inference_service.metrics import Metrics
from inference_service.model_registry import ActiveModels, load_model
from inference_service.scoring import score_items, to_matrix
from inference_service.training.train import replay

RESULTS = Path(__file__).parent / "results" / "scoring.json"
CLIENT_RESULTS = RESULTS.with_name("scoring_clients.json")
REPO = Path(__file__).resolve().parents[1]
CLIENT_BATCHES = (1, 16, 64, 256)
COMPARED_BATCH = 64
ENCODINGS: tuple[Encoding, ...] = ("json", "binary")

Pair = tuple[Transaction, dict[str, float]]


def sample_pairs(n_events: int, seed: int) -> list[Pair]:
    """``n_events`` simulator events with their features computed by the shared code."""
    sim = Simulator(SimConfig(seed=seed, n_users=2000))
    events = list(sim.events(count=n_events))
    data = replay(events, sim.profiles())
    return [
        (ev.txn, dict(zip(FEATURE_NAMES, row, strict=True)))
        for ev, row in zip(events, data.x.tolist(), strict=True)
    ]


def sample_items(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """The request items of ``pairs``, as the stream job builds them."""
    return [scoring_request(txn, features) for txn, features in pairs]


def in_process(models: ActiveModels, items: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Rows/s of the model alone and of the full scoring step (validated items -> response dicts)."""
    validated = [ScoreItem.model_validate(i) for i in items]
    metrics = Metrics()
    out: dict[str, Any] = {}
    for batch in (1, 64, 512):
        chunks = [validated[i : i + batch] for i in range(0, len(validated) - batch + 1, batch)]
        matrices = [to_matrix(c) for c in chunks]
        runs: dict[str, Callable[[int], object]] = {
            "score_items": lambda k, c=chunks: score_items(models, c[k % len(c)], metrics),  # type: ignore[misc]
            "predict_only": lambda k, m=matrices: models.live.predict(m[k % len(m)]),  # type: ignore[misc]
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HttpxTransport:
    """The batch route over httpx's keep-alive ``Client`` (a :class:`~fraud_core.scoring_client.Transport`)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        self._client = httpx.Client(base_url=base_url, headers=dict(headers), timeout=timeout_s)

    def post(self, body: bytes, correlation_id: bytes) -> tuple[int, bytes]:
        extra = {"X-Correlation-ID": correlation_id.decode("ascii")} if correlation_id else None
        try:
            answer = self._client.post("/v1/score/batch", content=body, headers=extra)
        except httpx.TransportError as exc:
            raise OSError(f"httpx: {exc!r}") from exc
        return answer.status_code, answer.content

    def close(self) -> None:
        self._client.close()


class Urllib3Transport:
    """The batch route over urllib3's ``PoolManager`` (keep-alive, one connection, no retries)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        self._pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(total=timeout_s))
        self._url = base_url + "/v1/score/batch"
        self._headers = dict(headers)

    def post(self, body: bytes, correlation_id: bytes) -> tuple[int, bytes]:
        headers = self._headers
        if correlation_id:
            headers = {**headers, "X-Correlation-ID": correlation_id.decode("ascii")}
        try:
            answer = self._pool.request("POST", self._url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise OSError(f"urllib3: {exc!r}") from exc
        return answer.status, answer.data

    def close(self) -> None:
        self._pool.clear()


TRANSPORTS: dict[str, TransportFactory] = {
    "hand-written": RawSocketTransport,
    "httpx": HttpxTransport,
    "urllib3": Urllib3Transport,
}


def client_worker(url: str, api_key: str, events: int) -> int:
    """The BatchScorer side of the table, in a process of its own (``--client-worker``).

    Reads ``<batch> <seconds> [<transport> <encoding>]`` lines on stdin (default: the scoring
    path's own client); for each, runs a closed loop of ``batch``-row calls for ``seconds`` and
    answers one JSON line: requests, rows, wall and CPU seconds.
    """
    pairs = sample_pairs(events, seed=11)
    scorers: dict[tuple[str, str], BatchScorer] = {}
    try:
        for line in sys.stdin:
            fields = line.split()
            batch, seconds = int(fields[0]), float(fields[1])
            key = (fields[2], fields[3]) if len(fields) == 4 else ("default", "default")
            scorer = scorers.get(key)
            if scorer is None:
                options: dict[str, Any] = {}
                if key[0] != "default":
                    options = {"transport": TRANSPORTS[key[0]], "encoding": key[1]}
                scorer = scorers[key] = BatchScorer(url, api_key, timeout_s=10.0, retries=0, **options)
            chunks = [pairs[i : i + batch] for i in range(0, len(pairs) - batch + 1, batch)]
            for k in range(20):
                scorer.score(chunks[k % len(chunks)])
            k = 0
            cpu0 = time.process_time()
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                if scorer.score(chunks[k % len(chunks)])[0].degraded:
                    raise RuntimeError(f"the service did not answer a batch of {batch}; see its log")
                k += 1
            wall = time.perf_counter() - start
            out = {"requests": k, "rows": k * batch, "wall_s": wall, "cpu_s": time.process_time() - cpu0}
            print(json.dumps(out), flush=True)
    finally:
        for scorer in scorers.values():
            scorer.close()
    return 0


@dataclass
class ScorerSystem:
    """One service and one BatchScorer client, both from the source tree ``tree``."""

    name: str
    url: str
    service: subprocess.Popen[bytes]
    client: subprocess.Popen[str]

    @classmethod
    def start(cls, name: str, tree: Path, model_dir: Path, api_key: str, events: int) -> ScorerSystem:
        url = f"http://127.0.0.1:{free_port()}"
        service = start_service(model_dir, int(url.rsplit(":", 1)[1]), tree)
        client = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--client-worker", url, "--events", str(events)],
            cwd=tree,
            env=_tree_env(tree, SCORING_API_KEY=api_key),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return cls(name, url, service, client)

    def run(self, batch: int, seconds: float, transport: str = "", encoding: str = "") -> dict[str, float]:
        """µs per row at ``batch``: wall, client CPU and service CPU (of ``transport`` with
        ``encoding``; by default the scoring path's own client)."""
        assert self.client.stdin is not None and self.client.stdout is not None
        server0 = cpu_seconds(self.service.pid)
        choice = f" {transport} {encoding}" if transport else ""
        self.client.stdin.write(f"{batch} {seconds}{choice}\n")
        self.client.stdin.flush()
        line = self.client.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} client exited (code {self.client.wait()})")
        server = cpu_seconds(self.service.pid) - server0
        r = json.loads(line)
        return {
            "requests": r["requests"],
            "wall_us_per_row": r["wall_s"] / r["rows"] * 1e6,
            "client_cpu_us_per_row": r["cpu_s"] / r["rows"] * 1e6,
            "server_cpu_us_per_row": server / r["rows"] * 1e6,
        }

    def stop(self) -> None:
        for proc in (self.client, self.service):
            if proc.stdin is not None:
                proc.stdin.close()
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """``ref`` checked out in a temporary git worktree, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="score-bench-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=True)


def scorer_table(
    systems: Sequence[ScorerSystem], rounds: int, seconds: float
) -> dict[str, dict[str, dict[str, float]]]:
    """Median over ``rounds`` of each system at each batch size; the systems take turns (their
    order alternating by round) so that both see the same machine load."""
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for r in range(rounds):
        for batch in CLIENT_BATCHES:
            for system in systems if r % 2 == 0 else systems[::-1]:
                runs.setdefault((system.name, batch), []).append(system.run(batch, seconds))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for (name, batch), samples in runs.items():
        row = {
            key: round(statistics.median(s[key] for s in samples), 1)
            for key in ("wall_us_per_row", "client_cpu_us_per_row", "server_cpu_us_per_row")
        }
        row["requests"] = sum(s["requests"] for s in samples)
        table.setdefault(name, {})[str(batch)] = row
    return table


def client_table(system: ScorerSystem, rounds: int, seconds: float) -> dict[str, Any]:
    """µs per row at batch 64 of every transport with every encoding against one service, the
    median over ``rounds`` (the cells take turns, in reversed order every other round), and the
    verdict of issue 26: keep the hand-written client only if it is at least 20 % cheaper per row
    (wall, and client CPU) than the best library, with the body the scoring path sends."""
    cells = [(t, e) for t in TRANSPORTS for e in ENCODINGS]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(rounds):
        for transport, encoding in cells if r % 2 == 0 else cells[::-1]:
            sample = system.run(COMPARED_BATCH, seconds, transport, encoding)
            runs.setdefault((transport, encoding), []).append(sample)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for (transport, body), samples in runs.items():
        row = {
            key: round(statistics.median(s[key] for s in samples), 2)
            for key in ("wall_us_per_row", "client_cpu_us_per_row", "server_cpu_us_per_row")
        }
        row["requests"] = sum(s["requests"] for s in samples)
        table.setdefault(transport, {})[body] = row
    verdict = {}
    for encoding in ENCODINGS:
        for measure in ("wall_us_per_row", "client_cpu_us_per_row"):
            own = table["hand-written"][encoding][measure]
            best = min(table[t][encoding][measure] for t in TRANSPORTS if t != "hand-written")
            verdict[f"{encoding}_{measure}_saving"] = round(1 - own / best, 3)
    return {"batch": COMPARED_BATCH, "us_per_row": table, "hand_written_saving_vs_best_library": verdict}


def print_client_table(clients: dict[str, Any]) -> None:
    """One line per transport and body, then how much cheaper the hand-written client is."""
    print(f"batch {clients['batch']}, µs per row")
    print(f"{'client':<14}{'body':<8}{'wall':>10}{'client CPU':>12}{'server CPU':>12}{'requests':>10}")
    for transport, by_encoding in clients["us_per_row"].items():
        for encoding, row in by_encoding.items():
            print(
                f"{transport:<14}{encoding:<8}{row['wall_us_per_row']:>10}{row['client_cpu_us_per_row']:>12}"
                f"{row['server_cpu_us_per_row']:>12}{row['requests']:>10}"
            )
    for name, saving in clients["hand_written_saving_vs_best_library"].items():
        print(f"hand-written saving vs best library, {name}: {saving:.1%}")


def print_scorer_table(table: dict[str, dict[str, dict[str, float]]]) -> None:
    """One line per system and batch size; with two systems, the first's figures over the second's."""
    print(f"{'µs per row':<22}{'batch':>6}{'wall':>10}{'client CPU':>12}{'server CPU':>12}{'requests':>10}")
    for batch in CLIENT_BATCHES:
        rows = {name: by_batch[str(batch)] for name, by_batch in table.items()}
        for name, row in rows.items():
            print(
                f"{name:<22}{batch:>6}{row['wall_us_per_row']:>10}{row['client_cpu_us_per_row']:>12}"
                f"{row['server_cpu_us_per_row']:>12}{row['requests']:>10}"
            )
        if len(rows) == 2:
            a, b = rows.values()
            wall, client, server = (
                a[k] / b[k] for k in ("wall_us_per_row", "client_cpu_us_per_row", "server_cpu_us_per_row")
            )
            print(f"{'  ratio':<22}{batch:>6}{wall:>10.2f}{client:>12.2f}{server:>12.2f}")


def _tree_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment of a process running code from ``tree`` (ahead of the installed copy)."""
    return {**os.environ, "PYTHONPATH": str(tree), **extra}


def start_service(model_dir: Path, port: int, tree: Path = REPO) -> subprocess.Popen[bytes]:
    env = _tree_env(
        tree, MODEL_DIR=str(model_dir.resolve()), SCORING_PORT=str(port), APP_ENV="local", LOG_LEVEL="WARNING"
    )
    proc = subprocess.Popen([sys.executable, "-m", "inference_service"], env=env, cwd=tree)
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


def _write_clients(clients: dict[str, Any], version: str, args: ScoreBenchCli) -> None:
    result = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "model_version": version,
        "rounds": args.SCORE_BENCH_ROUNDS,
        "seconds_per_run": args.SCORE_BENCH_CLIENT_SECONDS,
        "clients_batch64": clients,
    }
    CLIENT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    CLIENT_RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {CLIENT_RESULTS}")


class ScoreBenchCli(BaseSettings):
    __doc__ = (
        "Scoring benchmark: in-process rows/s at batch 1/64/512, the HTTP service's single-request latency "
        "at --rate and batch-512 throughput, and the cost per row of POST /v1/score/batch through the "
        "stream job's BatchScorer (bench/score_bench.py's docstring says how each figure is measured). "
        "Writes bench/results/scoring.json (scoring_clients.json with --client-only or --clients-only) "
        "and prints the table. SCORING_API_KEY comes from the environment only (default: the development "
        f"key). {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "python -m bench.score_bench",
            {
                "MODEL_DIR": "model-dir",
                "SCORE_BENCH_RATE": "rate",
                "SCORE_BENCH_SECONDS": "seconds",
                "SCORE_BENCH_EVENTS": "events",
                "SCORE_BENCH_CLIENT_ONLY": "client-only",
                "SCORE_BENCH_COMPARE_REF": "compare-ref",
                "SCORE_BENCH_ROUNDS": "rounds",
                "SCORE_BENCH_CLIENT_SECONDS": "client-seconds",
                "SCORE_BENCH_CLIENTS_ONLY": "clients-only",
                "SCORE_BENCH_CLIENT_WORKER": "client-worker",
            },
        ),
        frozen=True,
        case_sensitive=True,
    )

    MODEL_DIR: Path = Field(Path("models"), description="Model registry folder (its LIVE model is used).")
    SCORE_BENCH_RATE: float = Field(200.0, gt=0, description="Single-request rate, requests/s.")
    SCORE_BENCH_SECONDS: float = Field(10.0, gt=0, description="Duration of each HTTP run, seconds.")
    SCORE_BENCH_EVENTS: int = Field(20_000, ge=1, description="Simulator events for sample rows.")
    SCORE_BENCH_CLIENT_ONLY: CliToggleFlag[bool] = Field(
        False, description="Only the BatchScorer table (batch 1/16/64/256), after the client comparison."
    )
    SCORE_BENCH_COMPARE_REF: str | None = Field(
        None,
        min_length=1,
        description="Also run the service and client of this git commit (e.g. HEAD), taking turns with "
        "this tree.",
    )
    SCORE_BENCH_ROUNDS: int = Field(3, ge=1, description="BatchScorer runs per cell; the median is kept.")
    SCORE_BENCH_CLIENT_SECONDS: float = Field(
        3.0, gt=0, description="Duration of one BatchScorer run, seconds."
    )
    SCORE_BENCH_CLIENTS_ONLY: CliToggleFlag[bool] = Field(
        False, description="Only the HTTP client comparison at batch 64."
    )
    # Internal: the client of another tree, started by --compare-ref (and by this tree's own run).
    SCORE_BENCH_CLIENT_WORKER: str | None = Field(None, description=CLI_SUPPRESS)
    SCORING_API_KEY: SecretStr = Field(SecretStr(DEV_API_KEY), description=CLI_SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_settings(ScoreBenchCli, argv)
    api_key = args.SCORING_API_KEY.get_secret_value()
    events, model_dir = args.SCORE_BENCH_EVENTS, args.MODEL_DIR
    if args.SCORE_BENCH_CLIENT_WORKER:
        return client_worker(args.SCORE_BENCH_CLIENT_WORKER, api_key, min(events, 5_000))

    version = read_pointer(model_dir, LIVE_POINTER)
    if version is None:
        sys.exit(f"no {model_dir}/LIVE: train a model first (make model)")
    rounds, seconds = args.SCORE_BENCH_ROUNDS, args.SCORE_BENCH_CLIENT_SECONDS
    with contextlib.ExitStack() as stack:
        systems: list[ScorerSystem] = []
        if args.SCORE_BENCH_COMPARE_REF:
            ref_tree = stack.enter_context(worktree(args.SCORE_BENCH_COMPARE_REF))
            systems.append(
                ScorerSystem.start(args.SCORE_BENCH_COMPARE_REF, ref_tree, model_dir, api_key, events)
            )
        systems.append(ScorerSystem.start("this tree", REPO, model_dir, api_key, events))
        for system in systems:
            stack.callback(system.stop)
        clients = client_table(systems[-1], rounds, seconds)
        print_client_table(clients)
        if args.SCORE_BENCH_CLIENTS_ONLY:
            _write_clients(clients, version, args)
            return 0
        scorer = scorer_table(systems, rounds, seconds)
        if args.SCORE_BENCH_CLIENT_ONLY:
            _write_client_only(scorer, clients, version, args)
            return 0
        items = sample_items(sample_pairs(events, seed=11))
        inproc = in_process(ActiveModels(load_model(model_dir, version), None), items, 2.0)
        headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        with httpx.Client(base_url=systems[-1].url, headers=headers, timeout=10) as client:
            single = http_single(client, items, args.SCORE_BENCH_RATE, args.SCORE_BENCH_SECONDS)
            batch = http_batch(client, items, 512, args.SCORE_BENCH_SECONDS)

    result = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "model_version": version,
        "in_process_rows_per_s": inproc,
        "http_single": single,
        "http_batch_512": batch,
        "batch_scorer_us_per_row": scorer,
        "clients_batch64": clients,
        "goals": {"single_p50_ms": 2, "single_p99_ms": 10, "batch_512_rows_per_s": 50_000},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    _print_results(result, args.SCORE_BENCH_RATE)
    return 0


def _write_client_only(
    scorer: dict[str, Any], clients: dict[str, Any], version: str, args: ScoreBenchCli
) -> None:
    """``--client-only``: the BatchScorer table and the client comparison, written where the client
    figures go, without the in-process and HTTP service runs."""
    result = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "model_version": version,
        "rounds": args.SCORE_BENCH_ROUNDS,
        "seconds_per_run": args.SCORE_BENCH_CLIENT_SECONDS,
        "batch_scorer_us_per_row": scorer,
        "clients_batch64": clients,
    }
    CLIENT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    CLIENT_RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model {version}")
    print_scorer_table(scorer)
    print(f"written to {CLIENT_RESULTS}")


def _print_results(result: dict[str, Any], rate: float) -> None:
    """The written results as a table on the terminal, one measure per line."""
    print(f"model {result['model_version']}")
    print(f"{'measure':<44}{'value':>14}")
    for label, table in result["in_process_rows_per_s"].items():
        for b, v in table.items():
            print(f"{'in-process ' + label + ' batch ' + b + ' (rows/s)':<44}{v:>14,}")
    single = result["http_single"]
    lat = single["latency_ms"]
    print(f"{'HTTP single @' + str(rate) + ' req/s p50 / p99 (ms)':<44}{lat['p50']:>7} / {lat['p99']}")
    print(f"{'HTTP single achieved req/s':<44}{single['achieved_rps']:>14}")
    print(f"{'HTTP batch-512 (rows/s)':<44}{result['http_batch_512']['rows_per_s']:>14,}")
    print_scorer_table(result["batch_scorer_us_per_row"])
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    raise SystemExit(main())
