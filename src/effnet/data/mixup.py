"""Mixup / cutmix with label smoothing folded into the soft targets: timm-style per batch, or per sample as the
EfficientNetV2 release (google/automl efficientnetv2/datasets.py) does it."""

from __future__ import annotations

import math

import torch


def smooth_one_hot(targets: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing: 1 - s + s/K on the true class, s/K elsewhere."""
    off = label_smoothing / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=torch.float32, device=targets.device)
    return out.scatter_(1, targets.long().view(-1, 1), 1.0 - label_smoothing + off)


MIX_MODES = ("batch", "per_sample")


class MixupCutmix:
    """Mix a batch with its reverse by mixup (blend) or cutmix (paste a box); returns soft targets.

    mode "batch" (timm's way): one lam ~ Beta(alpha, alpha) for the whole batch, and one of mixup / cutmix per batch
    (cutmix with probability `switch_prob` when both are on). mode "per_sample" (the EfficientNetV2 release): every
    image draws its own lam (mixup keeps max(lam, 1 - lam)) or its own cutmix box, and when both are on the first
    half of the batch is mixed up and the second half cut-mixed, each half with its own reverse.
    Randomness comes from torch's global generator, so seeding torch (and saving its state in checkpoints) makes it
    reproducible.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        mode: str = "batch",
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"prob and switch_prob must be in [0, 1], got {prob}, {switch_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mode not in MIX_MODES:
            raise ValueError(f"mixup mode must be one of {MIX_MODES}, got {mode!r}")
        self.mode = mode
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
        if self.mode == "per_sample":
            return self._per_sample(images, soft)
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

    def _per_sample(self, images: torch.Tensor, soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """automl's `mixing`: mixup on the first half and cutmix on the second when both alphas are set."""
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            half = images.shape[0] // 2
            mixed_a, soft_a = per_sample_mixup(images[:half], soft[:half], self.mixup_alpha)
            mixed_b, soft_b = per_sample_cutmix(images[half:], soft[half:], self.cutmix_alpha)
            return torch.cat([mixed_a, mixed_b]), torch.cat([soft_a, soft_b])
        if self.mixup_alpha > 0:
            return per_sample_mixup(images, soft, self.mixup_alpha)
        return per_sample_cutmix(images, soft, self.cutmix_alpha)


def per_sample_mixup(images: torch.Tensor, soft: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image with its partner in the reversed batch by its own weight max(lam, 1 - lam), lam ~ Beta."""
    if images.shape[0] == 0:
        return images, soft
    lam = torch.distributions.Beta(alpha, alpha).sample((images.shape[0],))
    lam = torch.maximum(lam, 1.0 - lam).to(images.device)
    weight = lam.view(-1, 1, 1, 1).to(images.dtype)
    mixed = images * weight + images.flip(0) * (1.0 - weight)
    return mixed, soft * lam.view(-1, 1) + soft.flip(0) * (1.0 - lam.view(-1, 1))


def per_sample_cutmix(images: torch.Tensor, soft: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste into each image its own box from its partner in the reversed batch; targets mix by the box's area.

    As automl's cutmix_mask: centre uniform over the image, side sqrt(1 - area) of the image's with area ~ Beta,
    corners at centre -/+ side // 2 clipped to the image.
    """
    count, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    if count == 0:
        return images, soft
    area = torch.distributions.Beta(alpha, alpha).sample((count,))
    ratio = torch.sqrt(1.0 - area)
    box_w, box_h = (ratio * width).long(), (ratio * height).long()
    cx, cy = torch.randint(0, width, (count,)), torch.randint(0, height, (count,))
    # Boxes drawn on the CPU generator; the [N, H, W] mask is built on the images' device (no large copy).
    device = images.device
    left, right = (cx - box_w // 2).clamp(0, width).to(device), (cx + box_w // 2).clamp(0, width).to(device)
    top, bottom = (cy - box_h // 2).clamp(0, height).to(device), (cy + box_h // 2).clamp(0, height).to(device)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < bottom[:, None])
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < right[:, None])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :]  # [N, H, W], 1 = pasted
    mixed = torch.where(mask[:, None], images.flip(0), images)
    pasted = mask.flatten(1).float().mean(dim=1).view(-1, 1).to(soft.device, soft.dtype)
    return mixed, soft * (1.0 - pasted) + soft.flip(0) * pasted
