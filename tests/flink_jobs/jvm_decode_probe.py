"""Runs the JVM decoder (``decode_payment``, flink_jobs/jvm_decode.py) in a real PyFlink mini-cluster
on given values and writes what it returned; a helper process of ``test_jvm_decode.py``, which keeps
PyFlink's JVM out of the test process.

    python -m tests.flink_jobs.jvm_decode_probe IN.json OUT.json REGISTRY_URL DECODER_JAR

IN.json is a list of base64 values (null for none); OUT.json gets one list per value, the
function's row in order. A failed job exits non-zero with the failure on stderr.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

from flink_jobs import jvm_decode


def main(argv: list[str]) -> int:
    source, target, registry_url, jar = argv
    values = [
        None if v is None else bytearray(base64.b64decode(v)) for v in json.loads(Path(source).read_text())
    ]
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("pipeline.jars", Path(jar).resolve().as_uri())
    t_env.get_config().set("parallelism.default", "1")
    jvm_decode.register(t_env)
    schema = DataTypes.ROW([DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.BYTES())])
    t_env.create_temporary_view("probe", t_env.from_elements(list(enumerate(values)), schema))
    url = registry_url.replace("'", "''")
    # The row's fields as columns: PyFlink's collect() cannot read a null inside a nested row.
    columns = ", ".join(f"d.{name}" for name in ("error_type", "error_message", *jvm_decode.FIELDS))
    query = f"SELECT i, {columns} FROM (SELECT i, {jvm_decode.FUNCTION}(v, '{url}') AS d FROM probe)"
    with t_env.execute_sql(query).collect() as results:
        rows = sorted((row[0], list(row[1:])) for row in results)
    Path(target).write_text(json.dumps([decoded for _, decoded in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
