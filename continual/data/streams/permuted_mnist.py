from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import permuted_stream


@register("permuted_mnist", source="mnist", **sources.mnist_facts())
def permuted_mnist(cfg, seed):
    """MNIST under a fixed pixel permutation per task (task 1: none), 10 tasks by default"""
    return permuted_stream("permuted_mnist", sources.load_mnist(cfg.root, cfg.download), cfg, seed)
