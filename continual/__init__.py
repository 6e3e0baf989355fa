"""continual: continual multi-task learning on a frozen MLP, routed by task-signature attention.

The Python API (docs/api.md), imported on first use so that `continual --help` stays fast:

    load_config(path, overrides)   the validated config (the CLI's `--config` and `key=value`)
    build_stream(cfg.data, seed)   the task stream
    extract_features(cfg, stream)  the stream a method sees: the backbone's extractor's flat features
    load_stream(cfg)               both at once, or the stream read from the feature cache (data.features=true)
    build_method(cfg, stream)      the ContinualModule `cfg.method` selects
    run(cfg, callbacks=())         the task loop; returns metrics.json's content
    load_run(run_dir)              a run read back: config, stream, trained module, metrics
    ContinualModule, register      what a method subclasses, and how it becomes `method=<name>`
"""

__version__ = "0.1.0"

_API = {
    "load_config": "continual.config.load",
    "build_stream": "continual.data.streams",
    "extract_features": "continual.features",
    "load_stream": "continual.features",
    "build_method": "continual.build",
    "run": "continual.experiment",
    "load_run": "continual.build",
    "ContinualModule": "continual.models.continual_module",
    "TaskData": "continual.data.task_data",
    "register": "continual.methods",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'continual' has no attribute '{name}'")
