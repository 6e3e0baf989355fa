"""Baseline methods, each a ContinualModule."""
