"""Metrics: one `Metric` callback per file, found by `continual.metrics.registry`; the stream
formulas of the accuracy matrix (`stream`), and the summary a run prints (`report`)."""
