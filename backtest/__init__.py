"""Backtests: replay a range of ``payments.initiated`` (or a producer Avro file) through the live
scoring job in bounded mode, one run per model version, into topics owned by the run; join the
decisions with ``payments.labels``; compare models and thresholds; write a report folder.

``python -m backtest --help`` (``make backtest ARGS=...``). Layout:

``ranges``      which records: timestamps or offsets -> exact offsets per partition, retention checks
``enrichment``  a snapshot of the live Redis profiles/blocklist in a separate database index
``models``      model versions on disk -> a private scoring service per version
``replay``      the bounded run of ``flink_jobs.scoring_job`` and reading its outputs back
``evaluate``    pure metrics (precision, recall, PR-AUC, cost, per scenario, cost curve)
``parity``      pure comparison of backtest decisions with live ones
``report``      report.md, metrics.json and plots, written to a temp folder then renamed
``cli``         the command line that ties them together
"""
