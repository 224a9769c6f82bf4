"""Optimizers: RMSProp in TensorFlow's form (the EfficientNet recipe), plus SGD and AdamW; decay groups as the refs."""

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


_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def reference_decays_biases(model: nn.Module) -> bool:
    """Whether the model's reference recipe puts biases under weight decay.

    The V1 reference (tensorflow/tpu efficientnet main.py) decays every trainable variable whose name lacks
    'batch_normalization', so SE and classifier biases are decayed; EfficientNetV2's (google/automl
    hparams `weight_decay_exclude='.*(bias|gamma|beta).*'`) excludes biases. V2 is recognised by its fused
    blocks; models without a spec (not effnet's) keep biases out.
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        return False
    return not spec.is_v2


def param_groups(model: nn.Module, weight_decay: float, *, decay_biases: bool = False) -> list[dict]:
    """Two groups: weights (and biases when `decay_biases`) with decay; norm-layer parameters (and biases) without."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters(False)}
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        is_norm = id(param) in norm_params
        is_bias = param.ndim <= 1 and not is_norm
        (no_decay if is_norm or (is_bias and not decay_biases) else decay).append(param)
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
    decay_biases: bool | None = None,
) -> torch.optim.Optimizer:
    """The optimizer `name` (rmsprop_tf, sgd, adamw) over `model`; weight decay skips norm layers, and biases
    unless `decay_biases` (None: as the model family's reference does, see `reference_decays_biases`)."""
    if decay_biases is None:
        decay_biases = reference_decays_biases(model)
    groups = param_groups(model, weight_decay, decay_biases=decay_biases)
    if name == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, rho=rho, momentum=momentum, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
