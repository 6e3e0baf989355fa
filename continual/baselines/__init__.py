"""Baseline methods, each a ContinualModule in its own file (registered in continual/methods.py);
what they share is in continual/helpers/."""
