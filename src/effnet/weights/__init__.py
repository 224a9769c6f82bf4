"""Weight import/export: effnet's safetensors format and timm / torchvision / efficientnet-pytorch layouts."""

from effnet.weights.io import load_model, load_state_dict, read_weights, save_weights
from effnet.weights.layouts import detect_layout, module_map, rename_to_effnet

__all__ = [
    "detect_layout",
    "load_model",
    "load_state_dict",
    "module_map",
    "read_weights",
    "rename_to_effnet",
    "save_weights",
]
