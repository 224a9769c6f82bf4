"""Which timm / torchvision model is the twin of an effnet model: same modules, same padding, same BN epsilon.

The key maps of `layouts.py` say where each tensor goes; this module says which builder of the other library
gives a network those tensors fit *and* that computes the same logits: timm's `tf_*` builders pad like
TensorFlow ("SAME") with BN eps 1e-3, its plain builders pad symmetrically with eps 1e-5, and both take
`pad_type=` / `bn_eps=` to say otherwise. torchvision's builders pad symmetrically with a fixed eps per variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from effnet.models.catalog import get_spec, list_models
from effnet.models.specs import NetSpec

if TYPE_CHECKING:
    from torch import nn

    from effnet.models.net import EfficientNet

TWIN_LAYOUTS = ("timm", "torchvision")
TF_EPS, TORCH_EPS = 1e-3, 1e-5

# effnet names with a twin in timm: (plain builder or None, tf_ builder).
_TIMM_NAMES = {
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}", f"tf_efficientnet_b{i}") for i in range(9)},
    "efficientnet_l2": ("efficientnet_l2", "tf_efficientnet_l2"),
    **{f"efficientnet_lite{i}": (f"efficientnet_lite{i}", f"tf_efficientnet_lite{i}") for i in range(5)},
    **{f"efficientnetv2_b{i}": (None, f"tf_efficientnetv2_b{i}") for i in range(4)},
    **{f"efficientnetv2_{v}": (f"efficientnetv2_{v}", f"tf_efficientnetv2_{v}") for v in ("s", "m", "l", "xl")},
}
# effnet names with a twin in torchvision: (builder, the BN eps it hard-codes). B5-B7 and V2 are TF ports.
_TORCHVISION_NAMES = {
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}", TORCH_EPS if i < 5 else TF_EPS) for i in range(8)},
    **{f"efficientnetv2_{v}": (f"efficientnet_v2_{v}", TF_EPS) for v in ("s", "m", "l")},
}
_PUBLISHED = {
    "timm": "the published efficientnet_b0..b8 / l2 / lite0..4 and efficientnetv2_b0..b3 / s / m / l / xl",
    "torchvision": "the published efficientnet_b0..b7 and efficientnetv2_s / m / l",
}
# Fields that do not change which tensors exist or what an eval forward computes from them.
_TRAINING_FIELDS = ("dropout", "drop_path_rate", "norm_momentum", "resolution", "train_resolution")


@dataclass(frozen=True)
class Twin:
    """The other library's builder (and its arguments) whose model loads effnet's tensors with strict=True."""

    library: str  # "timm" or "torchvision"
    name: str  # the builder's name in that library
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments beyond num_classes

    def describe(self, num_classes: int) -> str:
        """The call that builds the twin, e.g. `timm.create_model('tf_efficientnet_b0', num_classes=10)`."""
        args = "".join(f", {key}={value!r}" for key, value in self.model_args.items())
        if self.library == "timm":
            return f"timm.create_model({self.name!r}, num_classes={num_classes}{args})"
        return f"torchvision.models.{self.name}(num_classes={num_classes}{args})"

    def build(self, num_classes: int) -> nn.Module:
        """The twin itself, randomly initialized (needs timm or torchvision installed)."""
        if self.library == "timm":
            import timm

            return timm.create_model(self.name, num_classes=num_classes, **self.model_args)
        import torchvision

        return getattr(torchvision.models, self.name)(weights=None, num_classes=num_classes, **self.model_args)


def _registered_name(spec: NetSpec) -> str | None:
    """The registry name whose architecture `spec` has (any padding, BN eps or regularization), else None."""
    name = spec.name.split(".", 1)[0]
    if name not in list_models():
        return None
    reference = get_spec(name)
    same_settings = {key: getattr(spec, key) for key in ("padding", "norm_eps", "in_channels", *_TRAINING_FIELDS)}
    return name if reference.replace(**same_settings) == spec else None


def find_twin(model: EfficientNet, library: str, *, exact: bool = True) -> Twin:
    """The `library` model `model`'s tensors load into, computing the same logits; ValueError says why none is.

    `exact=False` accepts a torchvision twin whose padding or BN eps differs (its logits then differ a little).
    """
    if library not in TWIN_LAYOUTS:
        raise ValueError(f"no twin library {library!r}; choose one of {TWIN_LAYOUTS}")
    spec = model.spec
    name = _registered_name(spec)
    table = _TIMM_NAMES if library == "timm" else _TORCHVISION_NAMES
    if name is None or name not in table:
        what = f"{spec.name} (a changed architecture)" if name is None else name
        raise ValueError(
            f"{library} has no twin of {what}: it builds only {_PUBLISHED[library]}; save it with layout='effnet'"
        )
    # Build options that change the forward but not the tensors: timm takes them as arguments too.
    defaults = {"output_stride": 32, "global_pool": "avg"}
    options = {key: getattr(model, key, default) for key, default in defaults.items()}
    options = {key: value for key, value in options.items() if value != defaults[key]}
    if library == "timm":
        twin = _timm_twin(spec, *_TIMM_NAMES[name])
        return Twin("timm", twin.name, {**twin.model_args, **options})
    if options and exact:
        raise ValueError(
            f"torchvision's builders have no {' or '.join(options)} argument (this model: {options}); save in "
            "timm's layout, or pass exact=False (--inexact) to write it anyway"
        )
    return _torchvision_twin(spec, *_TORCHVISION_NAMES[name], exact=exact)


def _timm_twin(spec: NetSpec, plain: str | None, tf_name: str) -> Twin:
    # Pick the builder whose defaults already match, so the common cases need no extra arguments.
    use_tf = spec.padding == "same" or plain is None
    builder_padding, builder_eps = ("same", TF_EPS) if use_tf else ("symmetric", TORCH_EPS)
    args: dict[str, Any] = {}
    if spec.padding != builder_padding:
        args["pad_type"] = "same" if spec.padding == "same" else ""
    if spec.norm_eps != builder_eps:
        args["bn_eps"] = spec.norm_eps
    if spec.in_channels != 3:
        args["in_chans"] = spec.in_channels
    return Twin("timm", tf_name if use_tf else str(plain), args)


def _torchvision_twin(spec: NetSpec, builder: str, eps: float, *, exact: bool) -> Twin:
    problems = []
    if spec.padding != "symmetric":
        problems.append(f'padding "{spec.padding}" (torchvision pads symmetrically)')
    if spec.norm_eps != eps:
        problems.append(f"BN eps {spec.norm_eps:g} (torchvision's {builder} uses {eps:g}: norm_eps={eps:g} fits)")
    if spec.in_channels != 3:
        raise ValueError(f"torchvision's {builder} takes 3 input channels, this model {spec.in_channels}; use timm")
    if problems and exact:
        raise ValueError(
            f"torchvision's {builder} would compute other logits: this model has {' and '.join(problems)}; "
            "save in timm's layout, or pass exact=False (--inexact) to write it anyway"
        )
    return Twin("torchvision", builder)


def effnet_settings_of_timm(architecture: str, model_args: dict[str, Any]) -> tuple[str, str, float]:
    """(effnet name, padding, BN eps) of a timm architecture and its saved `model_args`; ValueError if none."""
    for name, (plain, tf_name) in _TIMM_NAMES.items():
        if architecture in (plain, tf_name):
            is_tf = architecture == tf_name
            pad_type = model_args.get("pad_type", "same" if is_tf else "")
            eps = float(model_args.get("bn_eps", TF_EPS if is_tf else TORCH_EPS))
            return name, "same" if pad_type == "same" else "symmetric", eps
    raise ValueError(
        f"timm architecture {architecture!r} has no effnet twin; effnet reads timm's efficientnet_b0..b8, l2, "
        "lite0..4, efficientnetv2_s/m/l/xl and their tf_ variants, and tf_efficientnetv2_b0..b3"
    )
