"""Hugging Face Hub support: `save_pretrained` / `from_pretrained` / `push_to_hub` through huggingface_hub's mixin.

The folder (or Hub repo) holds `model.safetensors`, a `config.json` with the spec, class count and preprocessing
(everything needed to rebuild the model, no code), and a generated model card `README.md`.
"""

# No `from __future__ import annotations`: huggingface_hub reads the __init__ annotations at class creation.

import json
from pathlib import Path
from typing import Any

from effnet.net import EfficientNet
from effnet.preprocess import Preprocess
from effnet.specs import NetSpec
from effnet.weights import save_weights

try:
    from huggingface_hub import ModelCard, PyTorchModelHubMixin
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("effnet.hub needs huggingface_hub; run: pip install 'effnet[hub]'") from err

_CARD = """---
{{ card_data }}
---

# {{ model_name }}

An EfficientNet-family image classifier saved with effnet ({{ num_classes }} classes,
{{ params }} parameters).

## Use

```python
from effnet.hub import EfficientNetHub

model = EfficientNetHub.from_pretrained("{{ repo_id }}")
transform = model.preprocess.transforms()  # PIL image -> normalized tensor
logits = model(transform(image).unsqueeze(0))
```

## Preprocessing

{{ preprocess }}

## Architecture

```
{{ summary }}
```
"""


class EfficientNetHub(
    EfficientNet,
    PyTorchModelHubMixin,
    library_name="effnet",
    tags=["image-classification", "efficientnet", "effnet"],
    pipeline_tag="image-classification",
    license="apache-2.0",
    model_card_template=_CARD,
):
    """An EfficientNet with huggingface_hub's save_pretrained / from_pretrained / push_to_hub."""

    def __init__(
        self,
        spec: NetSpec | dict,
        num_classes: int = 1000,
        preprocess: Preprocess | dict | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        # config.json holds plain dicts; the mixin hands them back as they were stored.
        if isinstance(preprocess, dict):
            preprocess = Preprocess.from_dict(preprocess)
        spec = spec if isinstance(spec, NetSpec) else NetSpec.from_dict(spec)
        super().__init__(spec, num_classes, preprocess=preprocess, class_names=class_names)
        # The config the mixin writes: what __init__ needs, in JSON form, with the preprocessing actually used.
        self._hub_mixin_config = {
            "spec": self.spec.to_dict(),
            "num_classes": self.num_classes,
            "preprocess": self.preprocess.to_dict(),
        }
        if self.class_names is not None:
            self._hub_mixin_config["class_names"] = list(self.class_names)

    @classmethod
    def from_model(cls, model: EfficientNet) -> "EfficientNetHub":
        """A Hub-enabled copy of any effnet model (same spec, classes and names, preprocessing and weights)."""
        names = list(model.class_names) if model.class_names is not None else None
        hub_model = cls(model.spec, model.num_classes, model.preprocess, names)
        hub_model.load_state_dict(model.state_dict())
        return hub_model.train(model.training)

    def _save_pretrained(self, save_directory: Path) -> None:
        # effnet's own safetensors writer: the same tensors, plus spec / preprocessing / names as metadata, so the
        # folder's model.safetensors also loads with effnet.weights.load_model and `effnet predict --weights`.
        save_weights(self, Path(save_directory) / "model.safetensors")

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Upload to the Hub repo `repo_id` (needs a token and network); the card's usage names that repo."""
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card: usage, preprocessing and the architecture summary, filled from this model."""
        values = {
            "model_name": self.spec.name,
            "num_classes": self.num_classes,
            "params": f"{sum(p.numel() for p in self.parameters()):,}",
            "preprocess": self.preprocess.describe(),
            "summary": self.spec.summary(),
            "repo_id": kwargs.pop("repo_id", "<user>/<repo>"),
            **kwargs,
        }
        return super().generate_model_card(*args, **values)


def save_pretrained(model: EfficientNet, folder: str | Path, **kwargs: Any) -> Path:
    """Save any effnet model as a Hub folder (model.safetensors, config.json, README.md); returns the folder."""
    EfficientNetHub.from_model(model).save_pretrained(folder, **kwargs)
    return Path(folder)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The config.json of a saved folder (spec, num_classes, preprocess)."""
    return json.loads((Path(folder) / "config.json").read_text())


def from_pretrained(repo_or_folder: str | Path, **kwargs: Any) -> EfficientNetHub:
    """Load a model saved with `save_pretrained` / `push_to_hub` (a local folder or a Hub repo id), in eval mode."""
    model = EfficientNetHub.from_pretrained(repo_or_folder, **kwargs)
    assert isinstance(model, EfficientNetHub)
    return model


__all__ = ["EfficientNetHub", "from_pretrained", "read_config", "save_pretrained"]
