"""continual: continual multi-task learning on a frozen MLP, routed by task-signature attention."""

__version__ = "0.1.0"
