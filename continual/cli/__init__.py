"""The `continual` command line."""
