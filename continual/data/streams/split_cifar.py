from continual.data import sources
from continual.data.streams import register
from continual.data.streams.cutting import split_stream


@register("split_cifar10", **sources.cifar_facts("cifar10"))
def split_cifar10(cfg, seed):
    """CIFAR-10 (data.root), 3x32x32 images, data.classes_per_task classes per task"""
    return split_stream("split_cifar10", sources.load_cifar(cfg.root, cfg.download, "cifar10"), cfg, seed, 10)


@register("split_cifar100", **sources.cifar_facts("cifar100"))
def split_cifar100(cfg, seed):
    """CIFAR-100 (data.root), 3x32x32 images, data.classes_per_task classes per task"""
    return split_stream("split_cifar100", sources.load_cifar(cfg.root, cfg.download, "cifar100"), cfg, seed, 100)
