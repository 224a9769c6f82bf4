"""Optimizers: RMSProp in TensorFlow's form (the EfficientNet recipe), plus SGD and AdamW, with no decay on BN/bias."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("rmsprop_tf", "sgd", "adamw")


class RMSpropTF(torch.optim.Optimizer):
    """TensorFlow's RMSProp: mean square starts at 1, epsilon inside the root, lr inside the momentum buffer.

    ms <- rho*ms + (1-rho)*g^2;  mom <- mu*mom + lr*g/sqrt(ms + eps);  w <- w - mom.
    Weight decay is TF's L2 term in the loss, i.e. g <- g + wd*w before the update.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 0.016,
        rho: float = 0.9,
        momentum: float = 0.9,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps <= 0 or not 0 <= rho < 1 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(
                f"invalid RMSpropTF settings lr={lr} rho={rho} momentum={momentum} eps={eps} "
                f"weight_decay={weight_decay}: need lr>=0, eps>0, 0<=rho<1, 0<=momentum<1, weight_decay>=0"
            )
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, mu, eps, wd = group["lr"], group["rho"], group["momentum"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if wd:
                    grad = grad.add(param, alpha=wd)
                state = self.state[param]
                if not state:
                    # TF initialises the mean square with ones, so early steps are not blown up by 1/sqrt(eps).
                    state["square_avg"] = torch.ones_like(param, memory_format=torch.preserve_format)
                    if mu > 0:
                        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                square_avg = state["square_avg"]
                square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
                denom = square_avg.add(eps).sqrt_()
                if mu > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(mu).addcdiv_(grad, denom, value=lr)
                    param.sub_(buf)
                else:
                    param.addcdiv_(grad, denom, value=-lr)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights with decay; BN parameters and biases (1-d tensors) without it."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    *,
    weight_decay: float,
    momentum: float = 0.9,
    rho: float = 0.9,
    eps: float = 1e-3,
) -> torch.optim.Optimizer:
    """The optimizer `name` (rmsprop_tf, sgd, adamw) over `model`, weight decay skipping BN and biases."""
    groups = param_groups(model, weight_decay)
    if name == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, rho=rho, momentum=momentum, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
