"""The Kafka edge, written once; the producer, the job's operators, the consumers, the backtest,
the bench and the tests compose these pieces:

``serde``        Avro serializer and deserializer callables (confluent-kafka's ``Serializer`` shape)
                 on :mod:`fraud_core.avro` and the registry client with typed errors
``headers``      the headers a new input event gets, and the ones that travel to derived records
``dead_letter``  the dead-letter record of a record that failed
``publisher``    a producer wrapper with back-pressure and delivery accounting
``readers``      watermarks and range reads over a consumer

The librdkafka configuration dicts stay with the connection settings of each deployable.
"""
