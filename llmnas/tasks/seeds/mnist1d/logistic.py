"""MNIST-1D reference model: logistic regression (410 parameters)."""

import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        features = 1
        for size in input_shape:
            features *= size
        self.linear = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
