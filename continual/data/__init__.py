"""Data: raw sources, task streams, the tensor loader and the LightningDataModule."""
