"""MNIST-1D reference model: bidirectional GRU, 6 hidden units, all time steps to a linear
head (5,134 parameters)."""

import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, length = input_shape
        self.rnn = nn.GRU(channels, 6, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * 6 * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.transpose(1, 2))  # (B, length, channels) -> (B, length, 12)
        return self.head(out.flatten(1))
