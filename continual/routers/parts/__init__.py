"""The router's parts (signature, token attention, task memories, gating), kept apart from the
method file `continual/routers/module.py` so that the method registry finds only methods."""
