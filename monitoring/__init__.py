"""Drift monitoring: how far live traffic has moved from what each model was trained on.

``reference`` bins the training data into the reference distributions the model card carries;
``drift`` compares a sliding window of live decisions with them (PSI and Jensen-Shannon distance);
``monitor`` is the Kafka consumer of the decision topics that exports the result to Prometheus.
"""
