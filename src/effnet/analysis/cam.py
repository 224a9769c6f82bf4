"""Where a classifier looks: class activation maps (Zhou et al. 2016; EfficientNet paper Fig. 7) and Grad-CAM.

CAM needs global average pooling followed by one linear layer, which every effnet model has: the score of class
c is the average over positions of sum_k w[c, k] * f_k(x, y), so sum_k w[c, k] * f_k(x, y) is the map itself.
Grad-CAM (Selvaraju et al. 2017) weights any layer's channels by the pooled gradient of the class score instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from effnet._util.fileio import atomic_write
from effnet.models.net import EfficientNet
from effnet.preprocess import Preprocess, full_view_transform

CAM_METHODS = ("cam", "gradcam")


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (H, W) map of an (N, H, W) batch to [0, 1] (min-max, as in the CAM paper's figures)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(1e-12)  # a constant map becomes all zeros instead of NaN
    return ((maps - low[:, None, None]) / span[:, None, None]).clamp(0.0, 1.0)


def _classifier_weight(model: EfficientNet) -> torch.Tensor:
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise ValueError("CAM needs the model's linear classifier; this model has none (num_classes=0?)")
    return classifier.weight


def _resolve_classes(logits: torch.Tensor, class_index: int | Sequence[int] | None) -> torch.Tensor:
    if class_index is None:
        return logits.argmax(1)
    indices = [class_index] * logits.shape[0] if isinstance(class_index, int) else list(class_index)
    if len(indices) != logits.shape[0] or not all(0 <= i < logits.shape[1] for i in indices):
        raise ValueError(f"class indices {indices} must be one per image, each in [0, {logits.shape[1]})")
    return torch.tensor(indices, device=logits.device)


@torch.no_grad()
def class_activation_map(
    model: EfficientNet, x: torch.Tensor, class_index: int | Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CAM of a batch: (maps (N, H, W) in [0, 1] at the input's size, class indices, logits).

    `class_index` None explains each image's top class; an int or one index per image picks others.
    """
    model = model.eval()
    features = model.forward_features(x)  # (N, C, h, w): the last map, after the head conv
    logits = model.forward_head(features)
    classes = _resolve_classes(logits, class_index)
    maps = torch.einsum("nc,nchw->nhw", _classifier_weight(model)[classes], features)
    maps = F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return normalize_maps(maps), classes, logits


def _target_module(model: EfficientNet, layer: str) -> nn.Module:
    if layer == "head":
        return model.head
    if layer.startswith("stage"):
        index = int(layer.removeprefix("stage"))
        if not 0 <= index < len(model.stages):
            raise ValueError(f"layer {layer!r}: the model has stages 0..{len(model.stages) - 1}")
        return model.stages[index]
    raise ValueError(f'layer must be "head" or "stageN" (N in 0..{len(model.stages) - 1}), got {layer!r}')


def grad_cam(
    model: EfficientNet, x: torch.Tensor, class_index: int | Sequence[int] | None = None, layer: str = "head"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM of a batch at `layer` ("head" or "stageN"): (maps in [0, 1] at the input's size, classes, logits)."""
    model = model.eval()
    captured: list[torch.Tensor] = []
    hook = _target_module(model, layer).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            # The input asks for gradients so that the graph exists even when the weights are frozen.
            logits = model(x.detach().requires_grad_(True))
            classes = _resolve_classes(logits, class_index)
            score = logits.gather(1, classes[:, None]).sum()
            (gradients,) = torch.autograd.grad(score, captured[0])
    finally:
        hook.remove()
    activations = captured[0].detach()
    channel_weights = gradients.mean((2, 3), keepdim=True)
    # ReLU keeps the evidence *for* the class, as Grad-CAM prescribes.
    maps = F.relu((channel_weights * activations).sum(1, keepdim=True))
    maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat_max = maps.flatten(1).max(1).values.clamp_min(1e-12)
    return (maps / flat_max[:, None, None]).clamp(0.0, 1.0), classes, logits.detach()


@dataclass(frozen=True)
class CamResult:
    """One image's map at the image's own size, with the class it explains."""

    heatmap: np.ndarray  # (height, width) float32 in [0, 1]
    class_index: int
    probability: float


def image_cam(
    model: EfficientNet,
    image: Image.Image,
    class_index: int | None = None,
    method: str = "cam",
    layer: str = "head",
) -> CamResult:
    """CAM or Grad-CAM of a whole PIL image (no crop), mapped back onto the image's own pixels.

    The image goes through the model's own preprocessing without its centre crop (`full_view_transform`)."""
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {CAM_METHODS}, got {method!r}")
    preprocess: Preprocess = model.preprocess
    image = image.convert("RGB")
    device = next(model.parameters()).device
    x = full_view_transform(preprocess)(image)[None].to(device)
    if method == "cam":
        maps, classes, logits = class_activation_map(model, x, class_index)
    else:
        maps, classes, logits = grad_cam(model, x, class_index, layer)
    index = int(classes[0])
    heatmap = F.interpolate(maps[:, None], size=(image.height, image.width), mode="bilinear")[0, 0]
    probability = float(logits.float().softmax(1)[0, index])
    return CamResult(heatmap.clamp(0, 1).cpu().numpy().astype(np.float32), index, probability)


@dataclass(frozen=True)
class CamPanel:
    """One overlay of an image: the model and method (Grad-CAM with its layer) that made it, and the map's class."""

    model: str
    method: str  # "cam", or "gradcam-<layer>"
    result: CamResult
    picture: Image.Image


def image_panels(
    models: Mapping[str, EfficientNet],
    image: Image.Image,
    methods: Sequence[str],
    class_indices: Sequence[int | None] = (None,),
    layer: str = "head",
    alpha: float = 0.5,
) -> list[CamPanel]:
    """Every (model, method, class) overlay of one image, in that order (class None: the model's top-1)."""
    panels = []
    for name, model in models.items():
        for method in methods:
            tag = method + (f"-{layer}" if method == "gradcam" else "")
            for class_index in class_indices:
                result = image_cam(model, image, class_index, method, layer)
                panels.append(CamPanel(name, tag, result, overlay(image, result.heatmap, alpha)))
    return panels


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
    """The image with the heatmap blended on top in a matplotlib colormap."""
    from matplotlib import colormaps

    colored = colormaps[colormap](heatmap)[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if base.shape[:2] != heatmap.shape:
        raise ValueError(f"heatmap {heatmap.shape} and image {base.shape[:2]} must have the same size")
    blended = (1 - alpha) * base + alpha * colored
    return Image.fromarray((blended * 255).round().astype(np.uint8))


def save_grid(
    cells: Sequence[Sequence[tuple[Image.Image, str]]],
    path: str | Path,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    cell_inches: float = 2.6,
) -> Path:
    """Save a rows x columns grid of (overlay, caption) panels as a PNG: rows are images, columns models."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows, cols = len(cells), max(len(row) for row in cells)
    # Size the panels after the pictures' shape so that wide photos do not leave bands of white.
    aspect = max(picture.height / picture.width for row in cells for picture, _ in row)
    height = rows * (cell_inches * aspect + 0.45)
    figure, axes = plt.subplots(rows, cols, figsize=(cols * cell_inches, height), squeeze=False)
    for r, row in enumerate(cells):
        for c in range(cols):
            axis = axes[r][c]
            axis.axis("off")
            if c < len(row):
                picture, caption = row[c]
                axis.imshow(picture)
                axis.set_title(caption, fontsize=8)
            if r == 0 and c < len(column_labels):
                axis.text(0.5, 1.18, column_labels[c], transform=axis.transAxes, ha="center", fontsize=10)
        if r < len(row_labels):
            axes[r][0].text(
                -0.05,
                0.5,
                row_labels[r],
                transform=axes[r][0].transAxes,
                ha="right",
                va="center",
                fontsize=9,
                rotation=90,
            )
    figure.tight_layout()
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(figure)
