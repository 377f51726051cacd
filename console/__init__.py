"""The analyst console: the review queue of REVIEW decisions, verdicts, and pipeline health."""
