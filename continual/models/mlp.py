"""The MLP backbone: Linear -> activation blocks and a linear output layer (the head)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, activation: str = "relu"):
        super().__init__()
        widths = [n_in, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = ACTIVATIONS[activation]()
        self.head = nn.Linear(widths[-1], n_out)
        self.n_in, self.widths, self.n_out = n_in, list(hidden), n_out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.act(layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
