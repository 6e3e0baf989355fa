"""Feature streams: the frozen extractor (`backbone.name`) run once over every split, so every
method sees a flat stream of features [N, D] and the MLP is built on D inputs.

`load_stream(cfg)` is the one call between the config and the method (the task loop, `load_run`,
`continual features`): with `data.features=true` each split's features, labels and the stream's
outline are cached under `<data.cache_dir or data.root>/features/` (`continual.features.cache`),
and a run that finds them all never builds the raw stream; else the stream is built and
`extract_features(cfg, stream)` runs the extractor.
"""

from continual.features.extract import extract_features, features_stream, load_stream, precompute

__all__ = ["extract_features", "features_stream", "load_stream", "precompute"]
