"""deploy/local package."""
