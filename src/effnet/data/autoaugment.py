"""RandAugment and AutoAugment `policy_v0` as the TF EfficientNet reference computes them.

Reference: tensorflow/tpu models/official/efficientnet/autoaugment.py (google/automl efficientnetv2/autoaugment.py
is the same code): which ops a policy draws, with what probability, and the reference's level-to-argument
mappings (docs/augment.md). The ops themselves, on uint8 RGB pixels: `effnet.data.augment_ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from effnet.data.augment_ops import RANDAUGMENT_OPS, apply_op, as_pixels

MAX_LEVEL = 10.0  # the reference's _MAX_LEVEL: magnitudes are fractions of 10, and larger ones extrapolate

# Ops whose argument the reference negates with probability 1/2 (_randomly_negate_tensor).
SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})

# policy_v0: 25 sub-policies of two (op, probability, level) steps; the one behind the published B0-B7
# AutoAugment checkpoints and EfficientNetV2-B0..B3.
POLICY_V0: tuple[tuple[tuple[str, float, int], ...], ...] = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


@dataclass(frozen=True)
class PixelConstants:
    """The pixel sizes at level 10: translation (pixels) and Cutout half-size (pixels)."""

    translate: float
    cutout: float


RANDAUGMENT_CONSTANTS = PixelConstants(translate=100, cutout=40)  # distort_image_with_randaugment
AUTOAUGMENT_CONSTANTS = PixelConstants(translate=250, cutout=100)  # distort_image_with_autoaugment


def level_to_arg(name: str, level: float, constants: PixelConstants = RANDAUGMENT_CONSTANTS) -> float | int | None:
    """The reference's argument for op `name` at `level` (before the random sign of SIGNED_OPS; None: no argument).

    Enhance factors 1.8 * level/10 + 0.1; Posterize keeps int(4 * level/10) bits; Solarize threshold
    int(256 * level/10); SolarizeAdd adds int(110 * level/10); Rotate 30 * level/10 degrees; Shear 0.3 * level/10;
    Translate constants.translate * level/10 pixels; Cutout half-size int(constants.cutout * level/10) pixels.
    """
    fraction = level / MAX_LEVEL
    table: dict[str, Callable[[], float | int | None]] = {
        "AutoContrast": lambda: None,
        "Equalize": lambda: None,
        "Invert": lambda: None,
        "Rotate": lambda: fraction * 30.0,
        "Posterize": lambda: int(fraction * 4),
        "Solarize": lambda: int(fraction * 256),
        "SolarizeAdd": lambda: int(fraction * 110),
        "Color": lambda: fraction * 1.8 + 0.1,
        "Contrast": lambda: fraction * 1.8 + 0.1,
        "Brightness": lambda: fraction * 1.8 + 0.1,
        "Sharpness": lambda: fraction * 1.8 + 0.1,
        "ShearX": lambda: fraction * 0.3,
        "ShearY": lambda: fraction * 0.3,
        "TranslateX": lambda: fraction * float(constants.translate),
        "TranslateY": lambda: fraction * float(constants.translate),
        "Cutout": lambda: int(fraction * constants.cutout),
    }
    if name not in table:
        raise ValueError(f"unknown augmentation op {name!r}; choose one of {', '.join(table)}")
    return table[name]()


def _signed(name: str, arg: float | int | None) -> float | int | None:
    # _randomly_negate_tensor: keep the sign when floor(U + 0.5) is 1, i.e. with probability 1/2.
    if name in SIGNED_OPS and arg is not None and float(torch.rand(())) < 0.5:
        return -arg
    return arg


def _is_tensor(image: Image.Image | torch.Tensor) -> bool:
    if isinstance(image, Image.Image):
        return False
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3:
        return True
    raise ValueError(
        "RandAugment/AutoAugment take an RGB PIL image or a uint8 tensor [3, H, W]; put them before "
        "ToImage/ToDtype in the pipeline"
    )


_Draws = Iterator[tuple[str, float | int | None]]  # the (op, signed argument) pairs a policy draws for one image


def _run(image: Image.Image | torch.Tensor, draws: _Draws) -> Image.Image | torch.Tensor:
    """Apply the drawn ops in turn, chained on uint8 [H, W, 3] pixels: one conversion in and one out, not one per
    op, and none when no op is drawn (AutoAugment's skipped steps)."""
    as_tensor = _is_tensor(image)  # before the first draw: `draws` is a generator
    pixels: np.ndarray | None = None
    for name, arg in draws:
        pixels = apply_op(as_pixels(image) if pixels is None else pixels, name, arg)
    if pixels is None:
        return image.clone(memory_format=torch.contiguous_format) if as_tensor else image
    # A copy either way, so the result never shares memory with the caller's input.
    if as_tensor:
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy())
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")


class TFRandAugment:
    """RandAugment as the TF reference: `num_ops` times, one of the 16 ops chosen uniformly, always applied.

    The reference draws a probability in [0.2, 0.8] per op but never uses it (none of its op functions takes
    one), so the chosen op always runs; magnitudes above 10 extrapolate the mappings (B5 used 17, B7 28).
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 10) -> None:
        if num_ops < 0 or magnitude < 0:
            raise ValueError(f"RandAugment needs num_ops >= 0 and magnitude >= 0, got {num_ops}, {magnitude}")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)

    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """Augment one image (PIL RGB, or a uint8 tensor [3, H, W])."""
        return _run(image, self._draws())

    def _draws(self) -> _Draws:
        for _ in range(self.num_ops):
            name = RANDAUGMENT_OPS[int(torch.randint(len(RANDAUGMENT_OPS), ()))]
            yield name, _signed(name, level_to_arg(name, self.magnitude, RANDAUGMENT_CONSTANTS))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude:g})"


class TFAutoAugment:
    """AutoAugment `policy_v0` as the TF reference: one of 25 sub-policies chosen uniformly, each of its two
    steps applied with its own probability at its fixed level (translate 250 px at level 10)."""

    def __init__(self, policy: str = "v0") -> None:
        if policy != "v0":
            raise ValueError(f"only the reference's policy 'v0' is implemented, got {policy!r}")
        self.policy = POLICY_V0

    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """Augment one image (PIL RGB, or a uint8 tensor [3, H, W])."""
        return _run(image, self._draws())

    def _draws(self) -> _Draws:
        for name, prob, level in self.policy[int(torch.randint(len(self.policy), ()))]:
            if float(torch.rand(())) < prob:  # the reference's floor(U + prob) == 1
                yield name, _signed(name, level_to_arg(name, level, AUTOAUGMENT_CONSTANTS))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy='v0')"


@dataclass(frozen=True)
class ReferenceAugment:
    """A model's augmentation in its reference training: the policy, and RandAugment's magnitude when used."""

    augment: str  # "autoaugment" (policy_v0) or "randaugment"
    magnitude: int  # RandAugment M (N = 2 throughout); also what `augment="randaugment"` uses for this model
    source: str


_V1_AA = "tensorflow/tpu efficientnet README: AutoAugment checkpoints (paper Table 2 accuracies)"
_V2_BASE = "automl effnetv2_configs: 'effnetv1_autoaug' (V1 preprocessing + policy_v0)"
_V2_RA = "automl effnetv2_configs: randaug, ram"
_REFERENCE_AUGMENT: dict[str, ReferenceAugment] = {
    **{f"efficientnet_b{i}": ReferenceAugment("autoaugment", 10, _V1_AA) for i in (0, 1, 2, 3, 4, 6)},
    # The README's RandAugment checkpoints: B5 with M=17 (83.7%), B7 and B8 with M=28 (84.7% for B7).
    "efficientnet_b5": ReferenceAugment("autoaugment", 17, _V1_AA + "; RandAugment M=17"),
    "efficientnet_b7": ReferenceAugment("autoaugment", 28, _V1_AA + "; RandAugment M=28"),
    "efficientnet_b8": ReferenceAugment("randaugment", 28, "tensorflow/tpu efficientnet README: B8 RandAugment M=28"),
    **{f"efficientnetv2_b{i}": ReferenceAugment("autoaugment", 10, _V2_BASE) for i in range(4)},
    "efficientnetv2_s": ReferenceAugment("randaugment", 10, _V2_RA + "=10"),
    "efficientnetv2_m": ReferenceAugment("randaugment", 15, _V2_RA + "=15"),
    "efficientnetv2_l": ReferenceAugment("randaugment", 20, _V2_RA + "=20"),
    "efficientnetv2_xl": ReferenceAugment("randaugment", 20, _V2_RA + "=20"),
}
# Models without a documented reference policy: the TF flags' RandAugment defaults (N=2, M=10).
_DEFAULT_AUGMENT = ReferenceAugment("randaugment", 10, "tensorflow/tpu main.py flags randaug_num_layers/magnitude")


def reference_augment(model_name: str) -> ReferenceAugment:
    """The augmentation a registry model was trained with in its reference code (RandAugment M=10 otherwise)."""
    return _REFERENCE_AUGMENT.get(model_name, _DEFAULT_AUGMENT)
