"""Start and stop the pipeline's own processes locally (scoring service, stream job, trainer).

Used by the demo, the benchmark and the tests, so all three run the pipeline the same way a user
does: as separate processes talking through Kafka, Redis and HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from deploy.local.stack import REPO_ROOT
from fraud_core.cli import child_env
from fraud_core.exceptions import StackError
from fraud_core.model_folder import LIVE_POINTER, UnreadableCard, read_card, read_pointer
from inference_service.core.config import Settings as ServiceSettings


@dataclass
class ManagedProcess:
    """A child process in its own session, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGINT) -> int | None:
        """Ask politely (``sig`` to the whole process group), then terminate, then kill."""
        for s in (sig, signal.SIGTERM, signal.SIGKILL):
            if not self.alive:
                break
            try:
                os.killpg(self.proc.pid, s)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=timeout_s if s != signal.SIGKILL else 10)
            except subprocess.TimeoutExpired:
                continue
        # The job's Python workers live in the same process group; make sure none outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> None:
        """Hard crash (SIGKILL to the whole group), as a machine failure would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def spawn(
    name: str, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start ``python -m ...`` style commands with this interpreter, logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ManagedProcess(name, proc, log_path)


def ensure_model(model_dir: Path, events: int = 200_000, seed: int = 7) -> None:
    """Train and promote a model into ``model_dir`` unless one is live there already whose card
    carries the drift reference (cards written before it existed are retrained: training is
    deterministic, so the version stays the same and only the card gains the reference)."""
    if _live_card_has_drift_reference(model_dir):
        return
    cmd = [sys.executable, "-m", "inference_service.training", "--seed", str(seed)]
    cmd += ["--events", str(events), "--model-dir", str(model_dir)]
    res = subprocess.run(cmd, cwd=REPO_ROOT, check=False)
    if res.returncode != 0:
        raise StackError(f"training failed (exit {res.returncode}): {' '.join(cmd)}")


def _live_card_has_drift_reference(model_dir: Path) -> bool:
    version = read_pointer(model_dir, LIVE_POINTER)
    if version is None:
        return False
    try:
        return read_card(model_dir, version).drift_reference is not None
    except (OSError, UnreadableCard):
        return False


def start_scoring_service(
    model_dir: Path, port: int, log_path: Path, api_key: str, extra_env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start the scoring service and wait until ``/readyz`` says the model is loaded and warm."""
    env = child_env(
        ServiceSettings,
        MODEL_DIR=model_dir,
        SCORING_PORT=port,
        SCORING_HOST="127.0.0.1",
        SCORING_API_KEY=api_key,
        **(extra_env or {}),
    )
    service = spawn("scoring-service", ["-m", "inference_service"], log_path, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", service)
    return service


def start_job(env: Mapping[str, str], args: Sequence[str], log_path: Path) -> ManagedProcess:
    """Start the stream job in its own mini-cluster process."""
    return spawn("scoring-job", ["-m", "flink_jobs.scoring_job", *args], log_path, env)


def wait_http(url: str, process: ManagedProcess, timeout_s: float = 120.0, needle: str = "") -> None:
    """Wait until ``url`` answers 200 (and its body contains ``needle``), or fail with the log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive:
            raise StackError(
                f"{process.name} exited at start. Last lines of {process.log_path}:\n{process.tail()}"
            )
        try:
            resp = requests.get(url, timeout=1)
            if resp.status_code == 200 and needle in resp.text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise StackError(f"{process.name} not ready at {url} after {timeout_s:.0f}s:\n{process.tail()}")
