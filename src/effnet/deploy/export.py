"""Deployment: fold BatchNorm into convolutions, export to ONNX or TorchScript, and check the result.

ONNX goes through torch.onnx's TorchScript-based exporter (`dynamo=False`): in this environment the dynamo
exporter needs the extra `onnxscript` package. Batch, height and width are dynamic: TF "SAME" padding is computed
with size arithmetic the tracer records (effnet.models.layers.padding), so the graph pads correctly at any input size.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._util.filecheck import FileValueError, build, parse_json, require_class_names, require_name
from effnet._util.fileio import atomic_write
from effnet.models.layers import ConvNormAct
from effnet.preprocess import Preprocess

EXPORT_FORMATS = ("onnx", "torchscript")
MIN_OUTPUT_SCALE = 1e-6  # below this, float32 rounding of the intermediates swamps the outputs
OPSET_RANGE = (7, 20)  # what torch.onnx's TorchScript exporter writes (all tried on B0 and Lite0)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the conv that feeds it, in place: y = scale * conv(x) + shift."""
    assert bn.running_mean is not None and bn.running_var is not None, "BN without running stats cannot fold"
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` whose conv weights absorb every BatchNorm (the BNs become Identity).

    The input model is left untouched; the copy computes the same function up to float rounding.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.bn, nn.BatchNorm2d):
            fuse_conv_bn(module.conv, module.bn)
            module.bn = nn.Identity()  # type: ignore[assignment]
    return folded


def count_batchnorms(model: nn.Module) -> int:
    """How many BatchNorm2d layers a model still has (0 after `fold_batchnorm` on an effnet model)."""
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


def example_input(model: nn.Module, resolution: int | None = None, batch_size: int = 1) -> torch.Tensor:
    """A random (batch, 3, res, res) input; the resolution defaults to the model's preprocessing size."""
    if resolution is None:
        preprocess = getattr(model, "preprocess", None)
        resolution = preprocess.input_size if preprocess is not None else 224
    return torch.randn(batch_size, 3, resolution, resolution)


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = 17) -> Path:
    """Write `model` (eval mode) to ONNX with dynamic batch, height and width; input "input", output "logits"."""
    model = model.eval()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings are expected and not actionable
            torch.onnx.export(
                model,
                (example,),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        _add_metadata(tmp, model, example.shape[-1])

    return atomic_write(path, write)


def _add_metadata(path: str, model: nn.Module, input_size: int) -> None:
    """Record the preprocessing and class names in the ONNX file's metadata_props, so the file runs on its own."""
    import onnx

    props: dict[str, str] = {}
    preprocess = getattr(model, "preprocess", None)
    if preprocess is not None:  # the size the file was traced and checked at (the graph takes any size)
        props["preprocess"] = json.dumps(replace(preprocess, input_size=input_size).to_dict())
    if getattr(model, "class_names", None):
        props["class_names"] = json.dumps(list(model.class_names))
    if getattr(model, "spec", None) is not None:
        props["architecture"] = model.spec.name
    if not props:
        return
    graph = onnx.load(path)
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, path)


@dataclass(frozen=True)
class OnnxMetadata:
    """What effnet records in an exported ONNX file next to the graph (None when absent)."""

    preprocess: Preprocess | None
    class_names: tuple[str, ...] | None
    architecture: str | None


def read_onnx_metadata(source: str | Path | Any) -> OnnxMetadata:
    """The preprocessing, class names and architecture of an ONNX file (a path or an onnxruntime session)."""
    session = onnx_session(source) if isinstance(source, (str, Path)) else source
    where = source if isinstance(source, (str, Path)) else "the ONNX file"
    return recorded_metadata(session.get_modelmeta().custom_metadata_map, where)


def recorded_metadata(props: dict[str, str], where: str | Path) -> OnnxMetadata:
    """effnet's entries in an exported file's metadata (ONNX metadata_props, OpenVINO rt_info), each checked as
    any value from a file is (effnet._util.filecheck) before anything uses it."""
    pre, names, architecture = props.get("preprocess"), props.get("class_names"), props.get("architecture")
    try:
        field = "metadata 'preprocess'"
        preprocess = build(Preprocess.from_dict, parse_json(pre, field, where), where, field) if pre else None
        field = "metadata 'class_names'"
        classes = require_class_names(parse_json(names, field, where), field, where, None) if names else None
        if architecture is not None:
            require_name(architecture, "metadata 'architecture'", where)
    except FileValueError as err:
        raise FileValueError(err.file, err.field, f"{err.problem}; export it again with `effnet export`") from None
    return OnnxMetadata(preprocess, classes, architecture)


def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Write a traced, frozen TorchScript module (any batch size, height and width)."""
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.freeze(torch.jit.trace(model, example))

    # Serialized in memory and written by Python: torch.jit.save's own file writer aborts the whole process
    # (SIGABRT) on a full disk, where a Python write raises ENOSPC that the caller reports in one line.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice; TorchScript still loads everywhere
        torch.jit.save(scripted, buffer)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))


def onnx_session(path: str | Path, threads: int = 0):  # -> onnxruntime.InferenceSession
    """An onnxruntime CPU session with every graph optimization (threads=0: onnxruntime's default, all cores).

    Denormal floats are flushed to zero, as OpenVINO does by default: x86 computes on denormals up to ~100x
    slower, and the tiny activations of an untrained (benchmark) network would otherwise decide the timing.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ValueError("onnxruntime is not installed; run: pip install 'effnet[export]'") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1 if threads else 0
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class ExportCheck:
    """How closely an exported file reproduces the PyTorch model on random inputs."""

    path: str
    format: str
    batch_sizes: tuple[int, ...]
    resolutions: tuple[int, ...]
    max_abs_diff: float
    max_abs_output: float  # scale of the PyTorch outputs, to read the difference against
    runtime: str

    @property
    def relative_diff(self) -> float:
        """max |exported - PyTorch| / max |PyTorch output|."""
        return self.max_abs_diff / self.max_abs_output if self.max_abs_output > 0 else float("inf")

    def verdict(self, rtol: float = 1e-4, atol: float | None = None) -> tuple[bool, str]:
        """(passed, reason): the difference within `rtol` of the output scale (or within `atol` when given).

        Outputs below MIN_OUTPUT_SCALE fail whatever the difference: float32 rounding of the O(1) intermediate
        values is larger than such outputs, so the comparison cannot tell a right export from a wrong one.
        """
        if self.max_abs_output < MIN_OUTPUT_SCALE:
            return False, (
                f"FAILED: outputs are ~0 (max |output| {self.max_abs_output:.1e} < {MIN_OUTPUT_SCALE:g}), so the "
                "comparison proves nothing; export a model with trained weights (--weights / --pretrained)"
            )
        if atol is not None:
            passed = self.max_abs_diff <= atol
            return passed, "OK" if passed else f"FAILED (> atol {atol:g})"
        passed = self.relative_diff <= rtol
        return passed, "OK" if passed else f"FAILED (relative diff > rtol {rtol:g})"


@torch.no_grad()
def check_export(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    resolution: int,
    batch_sizes: tuple[int, ...] = (1, 3),
    resolutions: tuple[int, ...] | None = None,
) -> ExportCheck:
    """Run the exported file (onnxruntime or torch.jit) and the original model on the same random inputs.

    Inputs are square at `resolution` and also at an odd size 17 px larger (default `resolutions`), which proves
    that height and width are dynamic and that TF "SAME" padding follows the size.
    """
    model = model.eval()
    if fmt == "onnx":
        session = onnx_session(path)
        run = lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # noqa: E731
        runtime = "onnxruntime"
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            loaded = torch.jit.load(str(path))
        run = loaded
        runtime = "torch.jit"
    else:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    resolutions = resolutions or (resolution, resolution + 17)
    generator = torch.Generator().manual_seed(0)
    worst, scale = 0.0, 0.0
    # Different batch sizes and sizes prove the batch, height and width axes are really dynamic.
    for index in range(max(len(batch_sizes), len(resolutions))):
        batch_size, size = batch_sizes[index % len(batch_sizes)], resolutions[index % len(resolutions)]
        x = torch.randn(batch_size, 3, size, size, generator=generator)
        expected = model(x)
        worst = max(worst, (run(x) - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    return ExportCheck(str(path), fmt, batch_sizes, resolutions, worst, scale, runtime)


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str = "onnx",
    *,
    resolution: int | None = None,
    fold_bn: bool = True,
    opset: int = 17,
    check: bool = True,
) -> ExportCheck | None:
    """Fold BN (optional), export to `fmt` and, with `check`, compare the file against the unfolded model."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    if fmt == "onnx" and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise ValueError(
            f"opset must be in [{OPSET_RANGE[0]}, {OPSET_RANGE[1]}] (what torch.onnx writes for these "
            f"models), got {opset}"
        )
    if resolution is not None and resolution < 32:
        raise ValueError(f"resolution must be >= 32 pixels (the network's total stride), got {resolution}")
    model = model.eval()
    example = example_input(model, resolution)
    deployed = fold_batchnorm(model) if fold_bn else model
    if fmt == "onnx":
        export_onnx(deployed, path, example, opset)
    else:
        export_torchscript(deployed, path, example)
    if not check:
        return None
    try:
        return check_export(model, path, fmt, example.shape[-1])
    except BaseException:  # a file that cannot be run is not left behind as if it were an export
        Path(path).unlink(missing_ok=True)
        raise
