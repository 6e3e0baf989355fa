"""The task-signature attention router: the method in `module.py`, its parts (signature, token
attention, task memories, gating) in `parts/`."""
