"""Weight files: one reader (`read_file`) for every file effnet accepts, one loader (`load_model`) on top of it,
one `ModelSource` + `load_source` for what the commands, the server and training are told to load,
effnet's own format (`save_weights`, in effnet's, timm's or torchvision's key layout) and the key layouts of
timm / torchvision / efficientnet-pytorch, with the twin model of each library (`find_twin`)."""

from effnet.weights.io import SAVE_LAYOUTS, load_state_dict, save_weights
from effnet.weights.layouts import detect_layout, module_map, rename_to_effnet
from effnet.weights.loader import layer_settings, load_model
from effnet.weights.reader import CHECKPOINT_FORMAT, EFFNET_FORMAT, CorruptCheckpoint, WeightFile, read_file
from effnet.weights.source import ModelSource, load_source
from effnet.weights.twins import Twin, find_twin

__all__ = [
    "CHECKPOINT_FORMAT",
    "CorruptCheckpoint",
    "EFFNET_FORMAT",
    "ModelSource",
    "SAVE_LAYOUTS",
    "Twin",
    "WeightFile",
    "detect_layout",
    "find_twin",
    "layer_settings",
    "load_model",
    "load_source",
    "load_state_dict",
    "module_map",
    "read_file",
    "rename_to_effnet",
    "save_weights",
]
