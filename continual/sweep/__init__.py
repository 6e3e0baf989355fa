"""W&B sweep files run without a W&B server: `continual sweep sweeps/<file>.yaml`."""
