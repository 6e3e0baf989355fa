"""`continual compare`: a grid of methods x scenarios x seeds (spec), run by the grid runner
(continual/grid.py), summarized over seeds (stats), tabulated (tables), plotted (plot) and logged
to W&B (wandb_table); `command.compare` is the command."""
