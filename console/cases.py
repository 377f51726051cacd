"""The review queue lives in :mod:`fraud_core.review_cases` (the action consumer opens its cases,
the console resolves them); this name stays for ``console/pages.py`` until its import moves too."""

from fraud_core.review_cases import Case

__all__ = ["Case"]
