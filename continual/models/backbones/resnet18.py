"""`backbone.name=resnet18`: torchvision's ResNet-18 up to its pooled 512 features (the classifier
dropped); random weights unless `backbone.weights` names a file or a torchvision weight (then the
images are resized to 224 and normalized as ImageNet's were). On small images it is the network
torchvision builds (its stride-2 stem and max-pool included)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from continual.models.backbones import register
from continual.models.backbones._torchvision import ImageInput, check_image, load_named, named_weights


@register("resnet18", torchvision=True)
def resnet18(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision's ResNet-18 (512 features); backbone.weights: a file or ResNet18_Weights.IMAGENET1K_V1"""
    from torchvision.models import resnet18 as tv_resnet18

    check_image(cfg, "resnet18", input_shape)
    weights = named_weights(cfg, "resnet18")
    net = tv_resnet18(weights=None)
    net.fc = nn.Identity()
    if weights is None:
        return nn.Sequential(ImageInput(input_shape[0], None), net)
    load_named(net, weights, cfg)
    return nn.Sequential(ImageInput(input_shape[0], 224, weights.transforms().mean, weights.transforms().std), net)
