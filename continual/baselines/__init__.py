"""Baseline methods, each a ContinualModule in its own file (registered in continual/methods.py)."""
