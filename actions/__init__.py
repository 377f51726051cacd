"""The action consumers: what happens after a decision.

``payments.flagged`` with action BLOCK -> block the card (Redis blocklist entry with a TTL and the
reason), raise the user's risk tier, notify; with action REVIEW -> notify only (step-up or an
analyst decides; the card stays usable). Every action is audited to ``payments.actions``. ``payments.approved`` -> the user's profile learns the
payment (average amount, devices, countries), which the stream job's enrichment reads next time.

``logic``     pure functions: parse a decision, plan its actions, the updated profile, audit records
``store``     Redis: effects and the ``event_id`` marker in one transaction (exactly-once effects)
``notify``    the pluggable notifier (log line by default, webhook by configuration)
``consumer``  Kafka glue: batches, DLQ, commits after the actions, lag metrics, graceful stop
``settings``  ``ConsumerSettings`` (environment variables); ``__main__`` the CLI (``make consumers``)
"""
