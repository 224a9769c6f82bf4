"""torch.hub entry points: `torch.hub.load("<path or owner/effnet>", "efficientnet_b0", pretrained=False)`.

Every name of `effnet.list_models()` is an entry point; keyword arguments go to `effnet.create_model`
(num_classes, pretrained, features_only, out_indices, drop_rate, and timm's in_chans, global_pool,
output_stride, feature_cls, ...).
"""

import os
import sys

dependencies = ["torch", "torchvision", "numpy", "safetensors", "yaml", "tqdm", "PIL"]

# The package lives in src/; the checkout torch.hub loaded comes first, so its code is the code that runs.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import effnet as _effnet  # noqa: E402


def _entry_point(name: str):
    def create(pretrained: bool = False, **kwargs):
        return _effnet.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = (
        f"{name} ({_effnet.get_spec(name).resolution} px). pretrained=True loads its offline weight record "
        "(effnet.weights.pretrained); other keyword arguments go to effnet.create_model."
    )
    return create


for _name in _effnet.list_models():
    globals()[_name] = _entry_point(_name)
