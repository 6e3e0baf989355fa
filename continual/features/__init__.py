"""Feature streams: the frozen extractor (`backbone.name`) run once over every split, so every
method sees a flat stream of features [N, D] and the MLP is built on D inputs.

`extract_features(cfg, stream)` is the one call between the stream and the method (the task loop,
`load_run`, `continual features`); with `data.features=true` each split's features are cached under
`<data.root>/features/` by a content hash (`continual.features.cache`).
"""

from continual.features.extract import extract_features, features_stream, precompute

__all__ = ["extract_features", "features_stream", "precompute"]
