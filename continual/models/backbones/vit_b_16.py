"""`backbone.name=vit_b_16`: torchvision's ViT-B/16 up to its class token's 768 features (the head
dropped). Random weights: built for the images' own size (rounded up to a multiple of the 16-pixel
patch, the images resized to it); with a torchvision weight (`backbone.weights=ViT_B_16_Weights...`)
it is the 224-pixel network and the images are resized to 224 and normalized as ImageNet's were."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from continual.models.backbones import register
from continual.models.backbones._torchvision import ImageInput, check_image, load_named, named_weights

PATCH = 16


@register("vit_b_16", torchvision=True)
def vit_b_16(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision's ViT-B/16 (768 features); backbone.weights: a file or ViT_B_16_Weights.IMAGENET1K_V1"""
    from torchvision.models import vit_b_16 as tv_vit_b_16

    check_image(cfg, "vit_b_16", input_shape)
    weights = named_weights(cfg, "vit_b_16")
    if weights is None:
        size = -(-max(input_shape[1:]) // PATCH) * PATCH
        net = tv_vit_b_16(weights=None, image_size=size)
        transform = ImageInput(input_shape[0], size)
    else:
        net = tv_vit_b_16(weights=None)
        load_named(net, weights, cfg)
        transform = ImageInput(input_shape[0], 224, weights.transforms().mean, weights.transforms().std)
    net.heads = nn.Identity()
    return nn.Sequential(transform, net)
