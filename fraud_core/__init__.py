"""Logic shared by every deployable: features, validation, Avro framing, topics, fallback rules.

Pure functions only; nothing here reads the environment or opens a connection on import.
"""
