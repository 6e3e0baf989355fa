from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import rotated_stream


@register("rotated_mnist", **sources.mnist_facts())
def rotated_mnist(cfg, seed):
    """MNIST rotated by a fixed angle per task (data.rotations), 5 tasks over [0, 180) by default"""
    return rotated_stream("rotated_mnist", sources.load_mnist(cfg.root, cfg.download), cfg, seed)
