"""Batched RandAugment and AutoAugment `policy_v0`: the CPU policies' draws, made for a whole batch at once.

Each image draws its own ops, signs and Cutout centres from the same distributions as TFRandAugment /
TFAutoAugment (effnet.data.autoaugment); the draws come from torch's global CPU generator (so a checkpoint's RNG
state makes them reproducible), and the ops then run on the batch's device, one call per op per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effnet.data.autoaugment import (
    AUTOAUGMENT_CONSTANTS,
    POLICY_V0,
    RANDAUGMENT_CONSTANTS,
    RANDAUGMENT_OPS,
    SIGNED_OPS,
    PixelConstants,
    level_to_arg,
)
from effnet.data.gpu.ops import BATCHED_OPS, cutout

_NO_OP = -1  # a step an image skips (AutoAugment's probability said no)


@dataclass(frozen=True)
class AugmentPlan:
    """What every image of a batch gets: step k applies op names[ops[n, k]] with argument args[n, k]."""

    names: tuple[str, ...]
    ops: torch.Tensor  # [N, steps] int64 index into names, or -1 to skip the step
    args: torch.Tensor  # [N, steps] float64, signed; 0 for ops without an argument

    def applied(self) -> list[tuple[str, float]]:
        """(op name, argument) of every op applied, image by image, step by step."""
        pairs = zip(self.ops.flatten().tolist(), self.args.flatten().tolist(), strict=True)
        return [(self.names[op], arg) for op, arg in pairs if op != _NO_OP]


def _arg(name: str, level: float, constants: PixelConstants) -> float:
    value = level_to_arg(name, level, constants)
    return 0.0 if value is None else float(value)


def _random_signs(ops: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """-1 with probability 1/2 for the signed ops (the reference's _randomly_negate_tensor), else +1."""
    signed = torch.tensor([name in SIGNED_OPS for name in names])
    flips = torch.rand(ops.shape) < 0.5
    negate = flips & signed[ops.clamp(min=0)] & (ops != _NO_OP)
    return torch.where(negate, -1.0, 1.0).to(torch.float64)


def randaugment_plan(count: int, num_ops: int = 2, magnitude: float = 10) -> AugmentPlan:
    """`num_ops` ops per image, each uniform over the 16 reference ops, at `magnitude` (TFRandAugment's draws)."""
    names = RANDAUGMENT_OPS
    ops = torch.randint(len(names), (count, num_ops))
    table = torch.tensor([_arg(name, magnitude, RANDAUGMENT_CONSTANTS) for name in names], dtype=torch.float64)
    return AugmentPlan(names, ops, table[ops] * _random_signs(ops, names))


def autoaugment_plan(count: int) -> AugmentPlan:
    """One policy_v0 sub-policy per image, each of its two steps kept with its probability (TFAutoAugment's)."""
    names = tuple(dict.fromkeys(name for sub in POLICY_V0 for name, _, _ in sub))
    index = {name: i for i, name in enumerate(names)}
    op_table = torch.tensor([[index[name] for name, _, _ in sub] for sub in POLICY_V0])
    prob_table = torch.tensor([[prob for _, prob, _ in sub] for sub in POLICY_V0], dtype=torch.float64)
    arg_table = torch.tensor(
        [[_arg(name, level, AUTOAUGMENT_CONSTANTS) for name, _, level in sub] for sub in POLICY_V0], dtype=torch.float64
    )
    chosen = torch.randint(len(POLICY_V0), (count,))
    keep = torch.rand(count, 2, dtype=torch.float64) < prob_table[chosen]
    ops = torch.where(keep, op_table[chosen], _NO_OP)
    return AugmentPlan(names, ops, arg_table[chosen] * _random_signs(ops, names))


def apply_plan(images: torch.Tensor, plan: AugmentPlan) -> torch.Tensor:
    """Run a plan on uint8 images [N, 3, H, W] (any device): per step, each op once on the images that drew it."""
    if plan.ops.shape[0] != images.shape[0]:
        raise ValueError(f"the plan is for {plan.ops.shape[0]} images but the batch has {images.shape[0]}")
    out = images.clone()
    height, width = images.shape[2], images.shape[3]
    for step in range(plan.ops.shape[1]):
        column = plan.ops[:, step]
        for op in column.unique().tolist():
            if op == _NO_OP:
                continue
            members = (column == op).nonzero().flatten()
            args = plan.args[members, step]
            where = members.to(images.device)
            name = plan.names[op]
            if name == "Cutout":
                # The CPU op draws its centre (cy, cx) uniformly over the image when it runs.
                centres = torch.stack(
                    [torch.randint(0, height, (len(members),)), torch.randint(0, width, (len(members),))], dim=1
                )
                out[where] = cutout(out[where], args, centres)
            else:
                out[where] = BATCHED_OPS[name](out[where], args)
    return out


class BatchedRandAugment:
    """TFRandAugment for a batch: uint8 [N, 3, H, W] in, uint8 out, each image with its own ops."""

    def __init__(self, num_ops: int = 2, magnitude: float = 10) -> None:
        if num_ops < 0 or magnitude < 0:
            raise ValueError(f"RandAugment needs num_ops >= 0 and magnitude >= 0, got {num_ops}, {magnitude}")
        self.num_ops, self.magnitude = int(num_ops), float(magnitude)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch."""
        return apply_plan(images, randaugment_plan(images.shape[0], self.num_ops, self.magnitude))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude:g})"


class BatchedAutoAugment:
    """TFAutoAugment (policy_v0) for a batch: uint8 [N, 3, H, W] in, uint8 out."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch."""
        return apply_plan(images, autoaugment_plan(images.shape[0]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy='v0')"
