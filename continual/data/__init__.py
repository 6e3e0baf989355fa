"""Data: raw sources, task streams, the tensor loader and the LightningDataModule."""

from pathlib import Path


def cache_root(data) -> Path:
    """Where the platform's caches live (features, base backbones, generated data): `data.cache_dir`,
    else `data.root` (`data`: the run's data section)."""
    return Path(data.get("cache_dir") or data.root)
