"""Batch-level mixup / cutmix with label smoothing folded into the soft targets."""

from __future__ import annotations

import math

import torch


def smooth_one_hot(targets: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing: 1 - s + s/K on the true class, s/K elsewhere."""
    off = label_smoothing / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=torch.float32, device=targets.device)
    return out.scatter_(1, targets.long().view(-1, 1), 1.0 - label_smoothing + off)


class MixupCutmix:
    """Mix a batch with its reverse by mixup (blend) or cutmix (paste a box); returns soft targets.

    One mixing factor lam ~ Beta(alpha, alpha) per batch, as in the reference recipes. Randomness comes from
    torch's global generator, so seeding torch (and saving its state in checkpoints) makes it reproducible.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"prob and switch_prob must be in [0, 1], got {prob}, {switch_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing

    @property
    def active(self) -> bool:
        """Whether this ever mixes images (False: it only smooths the targets)."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix images [N, C, H, W] with int targets [N]; returns (images, soft targets [N, num_classes])."""
        if images.dim() != 4 or targets.dim() != 1 or images.shape[0] != targets.shape[0]:
            raise ValueError(
                f"expected images [N, C, H, W] and targets [N], got {tuple(images.shape)} and {tuple(targets.shape)}"
            )
        soft = smooth_one_hot(targets, self.num_classes, self.label_smoothing)
        if not self.active or float(torch.rand(())) >= self.prob:
            return images, soft
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or float(torch.rand(())) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        if use_cutmix:
            images, lam = self._cutmix(images, lam)
        else:
            images = images * lam + images.flip(0) * (1.0 - lam)
        return images, soft * lam + soft.flip(0) * (1.0 - lam)

    @staticmethod
    def _cutmix(images: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        """Paste a box of area ~(1 - lam) from the reversed batch; lam is corrected for clipping at the border."""
        height, width = images.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        box_h, box_w = int(height * cut), int(width * cut)
        cy = int(torch.randint(0, height, ()))
        cx = int(torch.randint(0, width, ()))
        top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
        left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images.flip(0)[..., top:bottom, left:right]
        return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)
