"""Metrics: stream metrics from the accuracy matrix, and the files a run leaves."""
