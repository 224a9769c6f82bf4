"""Weight files: one reader (`read_file`) for every file effnet accepts, one loader (`load_model`) on top of it,
effnet's own format (`save_weights`) and the key layouts of timm / torchvision / efficientnet-pytorch."""

from effnet.weights.io import load_state_dict, save_weights
from effnet.weights.layouts import detect_layout, module_map, rename_to_effnet
from effnet.weights.loader import layer_settings, load_model
from effnet.weights.reader import CHECKPOINT_FORMAT, EFFNET_FORMAT, CorruptCheckpoint, WeightFile, read_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "CorruptCheckpoint",
    "EFFNET_FORMAT",
    "WeightFile",
    "detect_layout",
    "layer_settings",
    "load_model",
    "load_state_dict",
    "module_map",
    "read_file",
    "rename_to_effnet",
    "save_weights",
]
