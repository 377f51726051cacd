"""Fetch the JVM parts of the local stack once; afterwards everything runs offline from the cache.

Kafka and the Flink Kafka connector are resolved by Maven from ``deploy/maven/pom.xml``; the job's JVM
decoder (``DECODE_IN=jvm``) is built from ``deploy/maven/decoder`` (again when a source changed). Apicurio's
runnable distribution is downloaded from Maven Central directly (its parent POM is not published
there, so Maven cannot resolve it) and checked against the SHA-1 Maven Central publishes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from deploy.local.stack import APICURIO_JAR, LIB_DIR, REPO_ROOT

log = logging.getLogger("fetch")

APICURIO_VERSION = "3.0.9"
CENTRAL = "https://repo.maven.apache.org/maven2"
APICURIO_URL = (
    f"{CENTRAL}/io/apicurio/apicurio-registry-app/{APICURIO_VERSION}/"
    f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
)


def fetch_maven() -> None:
    if any((LIB_DIR / "kafka").glob("kafka_2.13-*.jar")) and any((LIB_DIR / "flink").glob("*.jar")):
        return
    if shutil.which("mvn") is None:
        raise SystemExit(
            "error: Maven (mvn) not found; it is needed once to fetch Kafka and the Flink connector"
        )
    log.info("resolving Kafka and the Flink Kafka connector with Maven ...")
    res = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(REPO_ROOT / "deploy/maven/pom.xml"), "package"], check=False
    )
    if res.returncode != 0:
        raise SystemExit("error: Maven could not resolve the stack's jars (is Maven Central reachable?)")


DECODER = REPO_ROOT / "deploy" / "maven" / "decoder"
DECODER_JAR = LIB_DIR / "decoder" / "fraud-decoder.jar"


def decoder_sources() -> list[Path]:
    """What the JVM decoder's jar is built from: its POM, its Java sources and the reader schema."""
    return [
        DECODER / "pom.xml",
        *sorted((DECODER / "src").rglob("*.java")),
        REPO_ROOT / "schemas" / "payment_initiated.avsc",
    ]


def build_decoder() -> None:
    """Build the job's JVM decoder (``DECODE_IN=jvm``) when its jar is missing or older than a source."""
    if DECODER_JAR.exists() and DECODER_JAR.stat().st_mtime >= max(
        p.stat().st_mtime for p in decoder_sources()
    ):
        return
    if shutil.which("mvn") is None:
        raise SystemExit(
            "error: Maven (mvn) not found; it builds the job's JVM decoder (deploy/maven/decoder)"
        )
    log.info("building the JVM decoder (deploy/maven/decoder) ...")
    res = subprocess.run(["mvn", "-q", "-B", "-f", str(DECODER / "pom.xml"), "package"], check=False)
    if res.returncode != 0:
        raise SystemExit("error: Maven could not build deploy/maven/decoder (is Maven Central reachable?)")


def fetch_apicurio() -> None:
    target = LIB_DIR / "apicurio"
    if (target / APICURIO_JAR).exists():
        return
    cache = REPO_ROOT / ".stack" / "cache" / Path(APICURIO_URL).name
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        expected = urllib.request.urlopen(APICURIO_URL + ".sha1", timeout=30).read().decode().split()[0]
        if not cache.exists() or hashlib.sha1(cache.read_bytes()).hexdigest() != expected:
            with urllib.request.urlopen(APICURIO_URL, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length", 0))
                tmp = cache.with_suffix(".part")
                with (
                    tmp.open("wb") as out,
                    tqdm(total=total, unit="B", unit_scale=True, desc="apicurio") as bar,
                ):
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
                if hashlib.sha1(tmp.read_bytes()).hexdigest() != expected:
                    raise SystemExit(f"error: checksum mismatch for {APICURIO_URL}")
                tmp.rename(cache)
    except OSError as exc:
        raise SystemExit(f"error: download of Apicurio Registry failed ({APICURIO_URL}): {exc}") from exc
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(cache) as tar:
        tar.extractall(target, filter="data")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch_maven()
    build_decoder()
    fetch_apicurio()
    log.info("stack artifacts ready in %s", LIB_DIR.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
