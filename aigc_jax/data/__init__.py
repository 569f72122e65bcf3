"""Data sources and the grain pipeline."""
