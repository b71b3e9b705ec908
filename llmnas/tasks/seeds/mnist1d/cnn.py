"""MNIST-1D reference model: three strided 1-D convolutions of 25 channels (5,210 parameters)."""

import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, length = input_shape
        self.features = nn.Sequential(
            nn.Conv1d(channels, 25, kernel_size=5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        length = (length + 2 - 5) // 2 + 1  # each conv: (L + 2 * padding - kernel) // 2 + 1
        for _ in range(2):
            length = (length + 2 - 3) // 2 + 1
        self.head = nn.Linear(25 * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))
