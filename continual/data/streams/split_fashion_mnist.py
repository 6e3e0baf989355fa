from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import split_stream


@register("split_fashion_mnist", **sources.mnist_facts("FashionMNIST"))
def split_fashion_mnist(cfg, seed):
    """Fashion-MNIST (data.root), data.classes_per_task classes per task"""
    return split_stream("split_fashion_mnist", sources.load_mnist(cfg.root, cfg.download, "FashionMNIST"), cfg, seed)
