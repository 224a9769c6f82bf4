"""Exponential moving average of model weights, with TensorFlow's decay warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn


def tf_ema_decay(decay: float, num_updates: int) -> float:
    """TF's ExponentialMovingAverage(num_updates=n): min(decay, (1 + n) / (10 + n)).

    In the TF reference n is the global step read after the optimizer step that it averages (ema.apply runs
    under a control dependency on train_op, which increments the step), so the first update uses n = 1.
    """
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class ModelEma:
    """A frozen copy of a model whose float weights and BN statistics track the training model's average."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}; use 0 in the config to turn EMA off")
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights in: ema <- d*ema + (1-d)*w, d from TF's warm-up formula.

        Call once after each optimizer step; update k (k = 1, 2, ...) uses n = k like the TF reference.
        """
        self.num_updates += 1
        decay = tf_ema_decay(self.decay, self.num_updates)
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            ema_value = ema_state[name]
            if ema_value.is_floating_point():
                ema_value.lerp_(value.detach().to(ema_value.dtype), 1.0 - decay)
            else:  # integer buffers (BN's num_batches_tracked) are copied
                ema_value.copy_(value)

    def state_dict(self) -> dict:
        """Weights and update count, for checkpoints."""
        return {"module": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of `state_dict`."""
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
