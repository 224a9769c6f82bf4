"""Building blocks of EfficientNet, one concept per file."""

from effnet.models.layers.conv_norm_act import ACTIVATIONS, ConvNormAct, LayerConfig, create_activation
from effnet.models.layers.drop_path import DropPath, drop_path
from effnet.models.layers.mbconv import BLOCKS, Bottleneck, FusedMBConv, MBConv
from effnet.models.layers.padding import PADDING_MODES, Conv2dSame, create_conv2d, same_padding
from effnet.models.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "PADDING_MODES",
    "Bottleneck",
    "Conv2dSame",
    "ConvNormAct",
    "DropPath",
    "FusedMBConv",
    "LayerConfig",
    "MBConv",
    "SqueezeExcite",
    "create_activation",
    "create_conv2d",
    "drop_path",
    "same_padding",
]
