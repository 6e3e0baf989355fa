"""The task-signature attention router: signature, token attention, task memories, gating."""
