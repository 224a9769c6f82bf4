"""Hugging Face Hub support: `save_pretrained` / `from_pretrained` / `push_to_hub` through huggingface_hub's mixin.

The folder (or Hub repo) holds `model.safetensors`, a `config.json` and a generated model card `README.md`.
config.json carries effnet's spec, class count and preprocessing (everything needed to rebuild the model, no
code) and, for models with a timm twin, timm's keys (`architecture`, `model_args`, `pretrained_cfg`,
`label_names`) with the weights in timm's key layout: `timm.create_model("local-dir:FOLDER", pretrained=True)`
builds the same network. effnet reads both its own folders and folders timm wrote (`save_for_hf`).
"""

# No `from __future__ import annotations`: huggingface_hub reads the __init__ annotations at class creation.

import json
from pathlib import Path
from typing import Any

from effnet._util.filecheck import FileValueError, build
from effnet._util.fileio import write_text_atomic
from effnet.models.net import EfficientNet
from effnet.models.specs import NetSpec
from effnet.preprocess import Preprocess
from effnet.weights import load_state_dict, read_file, save_weights
from effnet.weights.reader import check_spec_fits
from effnet.weights.timm_config import from_timm_config, timm_config
from effnet.weights.twins import find_twin

# What a folder's weights may be called: ours and timm's safetensors, then timm's default (a weights-only pickle).
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

try:
    from huggingface_hub import ModelCard, PyTorchModelHubMixin
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("effnet.weights.hf needs huggingface_hub; run: pip install 'effnet[hub]'") from err

_CARD = """---
{{ card_data }}
---

# {{ model_name }}

An EfficientNet-family image classifier saved with effnet ({{ num_classes }} classes,
{{ params }} parameters).

## Use

```python
from effnet.weights.hf import EfficientNetHub

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
        # effnet's safetensors writer: spec / preprocessing / names ride along as metadata, so the folder's
        # model.safetensors also loads with effnet.weights.load_model and `effnet predict --weights`. With a timm
        # twin the keys are timm's and config.json gets timm's keys too, so timm loads the folder as well.
        config = dict(self._hub_mixin_config or {})
        try:
            find_twin(self, "timm")
        except ValueError:  # a changed architecture: effnet's layout, effnet's config only
            save_weights(self, Path(save_directory) / "model.safetensors")
        else:
            save_weights(self, Path(save_directory) / "model.safetensors", layout="timm")
            config = {**config, **timm_config(self)}
            config.pop("class_names", None)  # timm's label_names holds them
        write_text_atomic(Path(save_directory) / "config.json", json.dumps(config, indent=2) + "\n")

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        config: dict | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> "EfficientNetHub":
        # config.json is effnet's (a spec) or timm's (an architecture name); either way the weights load through
        # effnet's reader, which detects their key layout and executes no code.
        config = config or {}
        if "spec" not in config:
            spec, num_classes, preprocess, names = from_timm_config(config)
            model_kwargs = {"spec": spec, "num_classes": num_classes, "preprocess": preprocess, "class_names": names}
        elif model_kwargs.get("class_names") is None and config.get("label_names"):
            model_kwargs["class_names"] = list(config["label_names"])
        path = _weight_file(model_id, revision, cache_dir, force_download, local_files_only, token)
        file = read_file(path)
        # config.json's values are checked like any file's, and against the weights, before a layer is built.
        where = f"{model_id} config.json"
        spec = model_kwargs.get("spec")
        if isinstance(spec, dict):
            model_kwargs["spec"] = spec = build(NetSpec.from_dict, spec, where, "'spec'")
        if isinstance(spec, NetSpec):
            check_spec_fits(spec, file.tensors, Path(where), "'spec'")
        classes = model_kwargs.get("num_classes")
        if file.num_classes and classes is not None and classes != file.num_classes:
            raise FileValueError(where, "'num_classes'", f"is {classes!r}, but the weights have {file.num_classes}")
        if isinstance(model_kwargs.get("preprocess"), dict):
            model_kwargs["preprocess"] = build(Preprocess.from_dict, model_kwargs["preprocess"], where, "'preprocess'")
        model = cls(**model_kwargs)
        load_state_dict(model, file.weights(), source=str(path), strict=strict)
        return model.to(map_location).eval()

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


def _weight_file(
    model_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    force_download: bool,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    """The folder's (or Hub repo's) weight file: model.safetensors, else timm's pytorch_model.bin."""
    if Path(model_id).is_dir():
        for name in _WEIGHT_FILES:
            if (Path(model_id) / name).is_file():
                return Path(model_id) / name
        raise ValueError(f"{model_id} holds no weights: expected one of {', '.join(_WEIGHT_FILES)}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in _WEIGHT_FILES:
        try:
            return Path(
                hf_hub_download(
                    model_id,
                    name,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                )
            )
        except EntryNotFoundError:
            continue
    raise ValueError(f"Hub repo {model_id} holds no weights: expected one of {', '.join(_WEIGHT_FILES)}")


def save_pretrained(model: EfficientNet, folder: str | Path, **kwargs: Any) -> Path:
    """Save any effnet model as a Hub folder (model.safetensors, config.json, README.md); returns the folder."""
    EfficientNetHub.from_model(model).save_pretrained(folder, **kwargs)
    return Path(folder)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The config.json of a saved folder (spec, num_classes, preprocess, and timm's keys where it has a twin)."""
    return json.loads((Path(folder) / "config.json").read_text())


def from_pretrained(repo_or_folder: str | Path, **kwargs: Any) -> EfficientNetHub:
    """Load a Hub folder or repo id, in eval mode: one saved by effnet (`save_pretrained` / `push_to_hub`) or by
    timm (`save_for_hf` / `push_to_hf_hub`) for an EfficientNet timm and effnet both build."""
    model = EfficientNetHub.from_pretrained(repo_or_folder, **kwargs)
    assert isinstance(model, EfficientNetHub)
    return model


__all__ = ["EfficientNetHub", "from_pretrained", "read_config", "save_pretrained"]
