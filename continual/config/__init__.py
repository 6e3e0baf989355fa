"""Config: the typed schema and its loader."""

from continual.config.load import load_config

__all__ = ["load_config"]
