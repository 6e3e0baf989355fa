from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import split_stream


@register("split_digits", source="digits", files=lambda cfg: [sources.digits_file()])
def split_digits(cfg, seed):
    """scikit-learn's 8x8 digits (offline), data.classes_per_task classes per task; data.test_fraction is its test split"""
    return split_stream("split_digits", sources.load_digits(cfg.test_fraction, seed), cfg, seed)
