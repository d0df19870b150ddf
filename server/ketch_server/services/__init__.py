"""Use cases over the store."""
