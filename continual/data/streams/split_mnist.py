from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import split_stream


@register("split_mnist", source="mnist", **sources.mnist_facts())
def split_mnist(cfg, seed):
    """MNIST (data.root), data.classes_per_task digits per task"""
    return split_stream("split_mnist", sources.load_mnist(cfg.root, cfg.download), cfg, seed)
