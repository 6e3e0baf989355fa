"""Building blocks methods share (replay buffer, Fisher, class statistics, within-task outputs).

Kept out of `continual/baselines/` and `continual/routers/` so that the method registry, which
imports every module there, finds only methods.
"""
