"""Client of the scoring service's batch endpoint, with retries, a circuit breaker and the
rule-based fallback, so a caller always gets a score for every event and never waits unbounded.

By default it sends the binary columnar body (:mod:`fraud_core.scoring_wire`), which costs the
service a fraction of the JSON body per row; ``encoding="json"`` sends JSON. A service that refuses
the binary body (415: it predates it) is a configuration error raised to the caller, never a
silent switch to JSON nor a fallback that would hide it.
"""

from __future__ import annotations

import http.client
import logging
import math
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import orjson

from fraud_core.decision import ScoreResult, degraded_result, result_from_response, scoring_request
from fraud_core.exceptions import ConfigError, MalformedAnswer
from fraud_core.scoring_wire import JSON, MSGPACK, decode, encode_request
from fraud_core.transaction import Transaction

log = logging.getLogger(__name__)

Encoding = Literal["binary", "json"]


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; after ``reset_after_s`` one
    probe request is let through (half-open); its success closes the circuit again."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        if not self._probing and self._clock() - self._opened_at >= self.reset_after_s:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False


def fallback(features: Mapping[str, float]) -> ScoreResult:
    """No model score, marked degraded: the rules (with their ``fallback`` set) decide alone."""
    return degraded_result()


_SAFE_HEADER_VALUE = re.compile(r"[!-~]+")  # visible ASCII: nothing can end the header early
_MAX_HEAD = 64 * 1024


class KeepAliveConnection:
    """One persistent HTTP/1.1 connection for ``POST`` requests with ``Content-Length``-framed answers.

    Written for the scoring call instead of :mod:`http.client`, which spends about four times the
    CPU per request (header objects, the ``email`` parser for the response headers). Kept against the
    libraries because ``bench/score_bench.py --clients-only`` shows it cheaper by more than the 20 %
    that would justify hand-written code: at batch 64 it costs 8.4 µs of client CPU a row, against
    13.4 for urllib3's ``PoolManager`` and 17.9 for httpx's ``Client`` (both keep-alive), the same
    with the JSON and the binary body (2026-12-03, 2 shared cores); in the stream job that is CPU
    under the GIL of the Flink operator. (Wall time per row, on the same shared machine, swung from
    -20 % to +32 % between runs: too noisy to decide on.) A connection the server closed while idle
    (uvicorn drops keep-alive connections after 5 s) is reopened and the request sent again once,
    since scoring has no side effects. Anything else unexpected raises :class:`OSError` or
    :class:`http.client.HTTPException` and the connection is not reused.
    """

    def __init__(self, scheme: str, host: str, port: int | None, timeout_s: float) -> None:
        self._https = scheme == "https"
        self._address = (host, port or (443 if self._https else 80))
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None

    def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send ``head`` (request line and headers, without ``Content-Length``) and ``body``;
        return the status and the body of the answer."""
        request = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        reused = self._sock is not None
        try:
            return self._exchange(request)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.close()
            if not reused:
                raise
        except BaseException:
            self.close()
            raise
        try:
            return self._exchange(request)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=self._timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._address[0])
        return sock

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._sock is None:
            self._sock = self._connect()
        sock = self._sock
        sock.sendall(request)
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise http.client.RemoteDisconnected(
                    "the scoring service closed the connection without answering"
                )
            buf += chunk
            if len(buf) > _MAX_HEAD:
                raise http.client.HTTPException("the scoring service's response headers exceed 64 KiB")
        status_line, *header_lines = buf[:end].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise http.client.BadStatusLine(status_line)
        length: int | None = None
        close = version == "HTTP/1.0"
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length" and value.strip().isdigit():
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length is None:
            raise http.client.HTTPException(f"no Content-Length in the answer ({status_line})")
        chunks = [buf[end + 4 :]]
        received = len(chunks[0])
        while received < length:
            chunk = sock.recv(max(length - received, 65536))
            if not chunk:
                raise http.client.IncompleteRead(b"".join(chunks), length - received)
            chunks.append(chunk)
            received += len(chunk)
        if received != length:
            raise http.client.HTTPException(f"{received - length} bytes after the answer ({status_line})")
        if close:
            self.close()
        return int(rest[:3]), chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_results(content: bytes, requests: Sequence[Mapping[str, Any]]) -> list[ScoreResult]:
    """The results of a 200 answer to ``requests``: exactly one valid result per item, in order.

    Raises:
        MalformedAnswer: the body is not JSON, has no ``results`` list of the right length, or a
            result is for another event or lacks a finite score in [0, 1], a threshold or a version.
    """
    try:
        raw = orjson.loads(content)["results"]
    except (orjson.JSONDecodeError, TypeError, KeyError, IndexError) as exc:
        raise MalformedAnswer(f"no 'results' list in {content[:200]!r}") from exc
    if not isinstance(raw, list) or len(raw) != len(requests):
        count = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise MalformedAnswer(f"{count} results for {len(requests)} items")
    results = []
    for i, (item, request) in enumerate(zip(raw, requests, strict=True)):
        if not isinstance(item, dict):
            raise MalformedAnswer(f"result {i} is {item!r:.100}, not an object")
        if item.get("event_id", request["event_id"]) != request["event_id"]:
            raise MalformedAnswer(
                f"result {i} is for event {item['event_id']!r:.100}, not {request['event_id']!r}"
            )
        try:
            result = result_from_response(item)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedAnswer(f"result {i} is unreadable ({exc!r}): {item!r:.200}") from exc
        if not 0.0 <= result.score <= 1.0 or not math.isfinite(result.threshold):
            raise MalformedAnswer(f"result {i} has score {result.score!r}, threshold {result.threshold!r}")
        if not all(isinstance(r, str) for r in result.reasons):
            raise MalformedAnswer(f"result {i} has reasons that are not strings: {result.reasons!r:.200}")
        results.append(result)
    return results


def parse_binary_results(content: bytes, requests: Sequence[Mapping[str, Any]]) -> list[ScoreResult]:
    """The results of a 200 answer in the binary layout (:mod:`fraud_core.scoring_wire`), checked
    like :func:`parse_results`.

    Raises:
        MalformedAnswer: the body is not that layout, its columns are not one value per item, or a
            result is for another event or lacks a finite score in [0, 1], a threshold or a version.
    """
    try:
        answer = decode(content)
        version, threshold, block = answer["model_version"], answer["threshold"], answer["block_threshold"]
        columns = [answer[name] for name in ("event_id", "score", "decision", "reasons")]
        shadow_version, shadow_scores = answer["shadow_model_version"], answer["shadow_score"]
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedAnswer(f"not a binary scoring answer: {content[:200]!r}") from exc
    if shadow_scores is None:
        shadow_scores = [None] * len(requests)
    columns.append(shadow_scores)
    for column in columns:
        if not isinstance(column, list) or len(column) != len(requests):
            count = len(column) if isinstance(column, list) else type(column).__name__
            raise MalformedAnswer(f"{count} values in a column for {len(requests)} items")
    if not isinstance(version, str) or not isinstance(threshold, float) or not math.isfinite(threshold):
        raise MalformedAnswer(f"model_version {version!r:.100}, threshold {threshold!r:.100}")
    results = []
    for i, (event_id, score, _decision, reasons, shadow) in enumerate(zip(*columns, strict=True)):
        if event_id != requests[i]["event_id"]:
            raise MalformedAnswer(
                f"result {i} is for event {event_id!r:.100}, not {requests[i]['event_id']!r}"
            )
        if not isinstance(score, float) or not 0.0 <= score <= 1.0:
            raise MalformedAnswer(f"result {i} has score {score!r:.100}")
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise MalformedAnswer(f"result {i} has reasons that are not strings: {reasons!r:.200}")
        results.append(
            ScoreResult(
                score=score,
                threshold=threshold,
                model_version=version,
                reasons=reasons,
                degraded=False,
                shadow_score=shadow,
                shadow_model_version=shadow_version if shadow is not None else None,
                block_threshold=block,
            )
        )
    return results


def refused_items(content: bytes, n: int) -> dict[int, str]:
    """Index -> why, for each item a 422 answer names (``loc`` = body, items, index, field...)."""
    try:
        detail = orjson.loads(content)["detail"]
    except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
        return {}
    refused: dict[int, str] = {}
    for error in detail if isinstance(detail, list) else ():
        loc = error.get("loc") if isinstance(error, dict) else None
        if isinstance(loc, list) and len(loc) >= 3 and loc[:2] == ["body", "items"]:
            index = loc[2]
            if isinstance(index, int) and 0 <= index < n and index not in refused:
                # The field and the message, never the echoed input (it may hold anything).
                field = ".".join(str(part) for part in loc[3:]) or "item"
                refused[index] = f"{field}: {error.get('msg', '')}"
    return refused


class Transport(Protocol):
    """One keep-alive HTTP connection to the batch route: ``post`` sends a body with the headers
    fixed at construction (plus the correlation id, when given) and returns the status and body of
    the answer; it raises :class:`OSError` or :class:`http.client.HTTPException` when the exchange
    fails."""

    def post(self, body: bytes, correlation_id: bytes) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


TransportFactory = Callable[[str, Mapping[str, str], float], Transport]


class RawSocketTransport:
    """:class:`KeepAliveConnection` to ``<base_url>/v1/score/batch``, the request head prepared once."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        url = urlsplit(base_url)
        self._conn = KeepAliveConnection(url.scheme, url.hostname or "", url.port, timeout_s)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = f"POST {url.path}/v1/score/batch HTTP/1.1\r\nHost: {url.netloc}\r\n{lines}".encode(
            "ascii"
        )

    def post(self, body: bytes, correlation_id: bytes) -> tuple[int, bytes]:
        head = self._head + b"X-Correlation-ID: %s\r\n" % correlation_id if correlation_id else self._head
        return self._conn.post(head, body)

    def close(self) -> None:
        self._conn.close()


class BatchScorer:
    """Scores batches through ``POST /v1/score/batch``; falls back to rules when the service fails.

    Synchronous, over one persistent keep-alive connection (``transport``, by default
    :class:`RawSocketTransport`): the stream job calls it from a Flink operator thread, where a
    blocking call per batch costs less than any event loop, and a request of a few hundred rows is
    a few milliseconds. ``encoding`` is the request body: ``"binary"`` (columns, the default) or
    ``"json"``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 0.5,
        retries: int = 2,
        backoff_s: float = 0.02,
        breaker: CircuitBreaker | None = None,
        encoding: Encoding = "binary",
        transport: TransportFactory = RawSocketTransport,
    ) -> None:
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"SCORING_URL={base_url!r}: expected http(s)://host[:port]")
        if not _SAFE_HEADER_VALUE.fullmatch(api_key):
            raise ConfigError("SCORING_API_KEY must be visible ASCII characters (no spaces)")
        if encoding not in ("binary", "json"):
            raise ConfigError(f"scoring encoding {encoding!r}: expected 'binary' or 'json'")
        self._binary = encoding == "binary"
        self._url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key, "Content-Type": MSGPACK if self._binary else JSON}
        if self._binary:
            headers["Accept"] = MSGPACK
        self._conn = transport(self._url, headers, timeout_s)
        self._retries = retries
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()

    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]:
        """One score per item, in order: from the model when the service answers, else the fallback.

        Failures are per item: when the service refuses some items (422 naming them), those get the
        fallback and the others are sent again once, without counting against the breaker. A 200
        whose body is not one valid result per item is a transient fault, like a timeout.
        """
        if not items:
            return []
        if not self.breaker.allow():
            return [fallback(f) for _t, f in items]
        cid = b""
        if _SAFE_HEADER_VALUE.fullmatch(correlation_id) and len(correlation_id) <= 128:
            cid = correlation_id.encode("ascii")
        requests = [scoring_request(t, f) for t, f in items]
        answer = self._call(cid, requests)
        if isinstance(answer, list):
            return answer
        if not answer or len(answer) == len(requests):
            return [fallback(f) for _t, f in items]
        kept = [i for i in range(len(requests)) if i not in answer]
        retried = self._call(cid, [requests[i] for i in kept])
        if not isinstance(retried, list):
            return [fallback(f) for _t, f in items]
        results = [fallback(f) for _t, f in items]
        for i, result in zip(kept, retried, strict=True):
            results[i] = result
        return results

    def _call(self, cid: bytes, requests: list[dict[str, Any]]) -> list[ScoreResult] | set[int]:
        """The results of ``requests``; or the indices of the items the service refused (422);
        or an empty set after a transient failure (counted by the breaker) or another refusal.

        Raises:
            ConfigError: the service refuses the binary body (415).
        """
        body = encode_request(requests) if self._binary else orjson.dumps({"items": requests})
        parse = parse_binary_results if self._binary else parse_results
        for attempt in range(self._retries + 1):
            try:
                status, content = self._conn.post(body, cid)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("scoring call failed (attempt %d): %r", attempt + 1, exc)
            else:
                if status == 200:
                    try:
                        results = parse(content, requests)
                    except MalformedAnswer as exc:
                        log.warning(
                            "scoring service answered 200 with a malformed body (attempt %d), treated "
                            "as a transient fault: %s",
                            attempt + 1,
                            exc,
                        )
                    else:
                        self.breaker.record_success()
                        return results
                elif status == 422:
                    refused = refused_items(content, len(requests))
                    for i, why in sorted(refused.items()):
                        log.warning(
                            "scoring service refused item %d of %d (event_id=%s), it gets the fallback: %s",
                            i,
                            len(requests),
                            requests[i]["event_id"],
                            why,
                        )
                    if refused:
                        return set(refused)
                    log.warning("scoring service answered HTTP 422 naming no item: %s", content[:300])
                    return set()
                elif status == 415:
                    raise ConfigError(
                        f"the scoring service at {self._url} refuses the "
                        f"{'binary ' + MSGPACK if self._binary else JSON} body (HTTP 415: "
                        f"{content[:200].decode('utf-8', 'replace')}): it predates the binary body; "
                        "upgrade it, or construct the client with encoding='json'"
                    )
                else:
                    log.warning("scoring service answered HTTP %d: %s", status, content[:300])
                    if 400 <= status < 500 and status != 429:
                        break  # our request is wrong; retrying will not fix it
            if attempt < self._retries:
                time.sleep(self._backoff_s * 2**attempt)
        self.breaker.record_failure()
        return set()

    def close(self) -> None:
        self._conn.close()
