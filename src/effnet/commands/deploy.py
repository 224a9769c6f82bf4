"""`effnet predict`, `effnet cam`, `effnet export` and `effnet bench`: using and shipping a trained model."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from effnet._util.console import print_json, show_bar
from effnet._util.fileio import atomic_write, replace_files, staging_dir
from effnet._util.validation import (
    MAX_SIDE,
    finite_number,
    fraction,
    image_side,
    pixel_std,
    probability,
    thread_count,
    whole_number,
)
from effnet.deploy.runtimes import is_exported, open_exported
from effnet.models.net import EfficientNet
from effnet.models.registry import create_model
from effnet.weights import load_model

DEFAULT_MODEL = "efficientnet_lite0"

_HELP_MODEL = "registry name or spec file (see `effnet models`)"

# Every numeric flag is finite and in range when parsed (effnet._util.validation): a value no command can use is a
# one-line error naming the flag, never a silent default, a NaN result or a huge allocation.
_NORM_EPS = finite_number(0.0, 1.0, above=True)
_FRACTION = fraction
_STD = pixel_std
_ATOL = finite_number(0.0, 1e6, above=True)
_TOP_K = whole_number(1, 100_000)
_BATCH = whole_number(1, 4096)
_CLASS_INDEX = whole_number(0, 10_000_000)
_EXPORT_SIDE = whole_number(32, MAX_SIDE)
_OPSET = whole_number(1, 99)  # the exporter says which opsets it supports
_RUNS = whole_number(1, 100_000)
_WARMUP = whole_number(0, 100_000)
_PHOTOS = whole_number(1, 1_000_000)


def _add_model_args(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    default = "the weights file's own, else efficientnet_lite0"
    if multiple:
        parser.add_argument("--model", nargs="+", help=f"{_HELP_MODEL}; several OK (default: {default})")
        parser.add_argument("--weights", nargs="+", type=Path, help="one weight file per --model")
    else:
        parser.add_argument("--model", help=f"{_HELP_MODEL} (default: {default})")
        parser.add_argument(
            "--weights",
            type=Path,
            help="weight file: effnet .safetensors / checkpoint, timm, torchvision or efficientnet-pytorch state "
            "dict, or a .onnx / OpenVINO .xml file from `effnet export`",
        )
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="the model's pretrained weights; pick a tag with --model NAME.TAG (see `effnet models --pretrained`)",
    )
    parser.add_argument("--padding", choices=("symmetric", "same"), help='"same" for TF-trained weight files')
    parser.add_argument("--norm-eps", type=_NORM_EPS, help="BatchNorm epsilon (1e-3 for TF-trained weight files)")


def _add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preprocessing overrides (default: the model's own)")
    group.add_argument("--input-size", type=image_side, help="crop / network input size")
    group.add_argument("--crop-pct", type=_FRACTION, help="input size / resize size (crop resize mode)")
    group.add_argument(
        "--resize-mode", choices=("crop", "squash", "tf"), help="center crop, whole-image resize or TF's own eval"
    )
    group.add_argument("--mean", type=probability, nargs=3, help="per-channel mean of [0, 1] pixels")
    group.add_argument("--std", type=_STD, nargs=3, help="per-channel std of [0, 1] pixels")


def _load(args: argparse.Namespace, name: str | None, weights: Path | None, need_weights: bool) -> EfficientNet:
    """The model the flags describe, with the preprocessing and class names its weights carry (an exported .onnx
    or OpenVINO .xml comes back as an `effnet.deploy.runtimes.ExportedModel`, which computes logits only)."""
    if args.pretrained and weights is not None:
        raise ValueError("give either --pretrained or --weights, not both")
    if args.pretrained:
        model = create_model(name or DEFAULT_MODEL, pretrained=True)
    elif is_exported(weights):  # an ONNX / OpenVINO file effnet exported: its recorded preprocessing and classes
        model = open_exported(weights, name)  # type: ignore[arg-type]
    elif weights is not None:
        model = load_model(weights, name, padding=args.padding, norm_eps=args.norm_eps)
    elif need_weights:
        raise ValueError(
            f"{name or DEFAULT_MODEL} has random weights: pass --pretrained (see `effnet models --pretrained`) or "
            "--weights FILE"
        )
    else:
        model = create_model(name or DEFAULT_MODEL, padding=args.padding, norm_eps=args.norm_eps)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "input_size": getattr(args, "input_size", None),
            "crop_pct": getattr(args, "crop_pct", None),
            "resize_mode": getattr(args, "resize_mode", None),
            "mean": tuple(args.mean) if getattr(args, "mean", None) else None,
            "std": tuple(args.std) if getattr(args, "std", None) else None,
        }.items()
        if value is not None
    }
    if overrides:
        model.preprocess = replace(model.preprocess, **overrides)
    _check_finite(model, weights)
    if "crop_pct" in overrides and model.preprocess.resize_mode == "squash":
        raise ValueError(
            "--crop-pct would be ignored: squash mode resizes the whole image to --input-size without a crop; "
            "pass --resize-mode crop with it, or drop --crop-pct"
        )
    return model.eval()


def _check_finite(model: Any, weights: Path | None) -> None:
    """Refuse weights holding NaN or inf: every output would be NaN, printed as if it were a prediction."""
    import torch

    state = model.state_dict() if isinstance(model, torch.nn.Module) else {}
    bad = next(
        (name for name, value in state.items() if value.is_floating_point() and not value.isfinite().all()), None
    )
    if bad is not None:
        raise ValueError(
            f"{weights or 'the model'} holds non-finite weights (NaN or inf, first in {bad}), so every output would "
            "be NaN; use a checkpoint from before the run diverged"
        )


def _class_names(args: argparse.Namespace, model: EfficientNet) -> list[str] | None:
    """--classes-file, else the names the weights carry, else ImageNet-1k's for 1000 outputs."""
    from effnet.weights.pretrained import imagenet_classes

    num_classes = model.num_classes
    if getattr(args, "classes_file", None):
        path = Path(args.classes_file)
        if not path.is_file():
            raise ValueError(f"classes file {path} does not exist")
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) != num_classes:
            raise ValueError(
                f"{path} names {len(names)} classes but the model has {num_classes} outputs; "
                "give one name per line for every class, in the training order"
            )
        return names
    if getattr(model, "class_names", None) and len(model.class_names) == num_classes:
        return list(model.class_names)
    return list(imagenet_classes()) if num_classes == 1000 else None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the use-and-deploy subcommands."""
    pr = subparsers.add_parser("predict", help="classify images (files, folders, globs) with a model")
    pr.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    _add_model_args(pr)
    _add_preprocess_args(pr)
    pr.add_argument("--top-k", type=_TOP_K, default=5, help="classes to print per image (default 5)")
    pr.add_argument("--batch-size", type=_BATCH, default=16, help="images per forward pass (default 16)")
    pr.add_argument("--classes-file", type=Path, help="class names, one per line (default: ImageNet-1k)")
    pr.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_predict)

    cam = subparsers.add_parser("cam", help="class activation maps (CAM / Grad-CAM) as PNG overlays and a grid")
    cam.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    _add_model_args(cam, multiple=True)
    cam.add_argument("--method", nargs="+", choices=("cam", "gradcam"), default=["cam"], help="one or both")
    cam.add_argument("--layer", default="head", help='Grad-CAM layer: "head" or "stageN" (default head)')
    cam.add_argument("--class-index", type=_CLASS_INDEX, nargs="+", help="classes to explain (default: each top-1)")
    cam.add_argument("--out", type=Path, default=Path("cam"), help="output folder (default ./cam)")
    cam.add_argument("--alpha", type=probability, default=0.5, help="heatmap opacity (default 0.5)")
    cam.add_argument("--json", action="store_true", help="print the overlays written, as JSON")
    cam.set_defaults(func=_cam)

    ex = subparsers.add_parser("export", help="export to ONNX or TorchScript (BN folded) and check it")
    _add_model_args(ex)
    ex.add_argument(
        "--format",
        choices=("onnx", "torchscript", "timm", "torchvision"),
        default="onnx",
        help="default onnx; timm / torchvision: a .safetensors state dict their twin model loads (strict=True)",
    )
    ex.add_argument("--inexact", action="store_true", help="torchvision: write even if its padding / BN eps differ")
    ex.add_argument("--out", type=Path, help="output file (default: <model>.onnx / <model>.pt)")
    ex.add_argument("--resolution", type=_EXPORT_SIDE, help="input height and width (default: the model's input size)")
    ex.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm layers in the exported graph")
    ex.add_argument("--opset", type=_OPSET, default=17, help="ONNX opset (default 17)")
    ex.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    ex.add_argument(
        "--rtol", type=_FRACTION, default=1e-4, help="max |exported - PyTorch| / max |output| allowed (default 1e-4)"
    )
    ex.add_argument("--atol", type=_ATOL, help="an absolute bound on |exported - PyTorch| instead of --rtol")
    ex.add_argument("--json", action="store_true", help="print the file, its input and the check as JSON")
    _add_int8_args(ex)
    ex.set_defaults(func=_export)

    be = subparsers.add_parser("bench", help="CPU latency (paper Table 4 protocol) or throughput, with ratios")
    be.add_argument(
        "models",
        nargs="*",
        default=["efficientnet_b0"],
        help="effnet models or exported .onnx / .xml files (default b0)",
    )
    be.add_argument(
        "--mode",
        choices=("latency", "throughput"),
        default="latency",
        help="latency: batch 1, 1 thread (paper); throughput: --batch-size, all threads",
    )
    be.add_argument("--batch-size", type=_BATCH, default=32, help="throughput batch size (default 32)")
    be.add_argument("--threads", type=thread_count, help="threads (default: 1 for latency, all for throughput)")
    be.add_argument("--runs", type=_RUNS, default=30, help="timed runs, the median is reported (default 30)")
    be.add_argument("--warmup", type=_WARMUP, default=5, help="untimed warm-up runs (default 5)")
    be.add_argument("--resolution", type=image_side, help="input size for every model (default: each native)")
    be.add_argument("--optimize", action="store_true", help="also time the optimized path (BN fold + best backend)")
    be.add_argument("--no-twins", action="store_true", help="skip timm / torchvision twins")
    be.add_argument("--no-resnets", action="store_true", help="skip ResNet-50 / ResNet-152")
    be.add_argument(
        "--no-anchors", action="store_true", help="skip the twin on onnxruntime and effnet's export on OpenVINO"
    )
    be.add_argument("--int8", action="store_true", help="also time effnet's int8 export (effnet export --int8)")
    be.add_argument(
        "--calibration", type=Path, help="photos to calibrate --int8 on (default: random inputs, for timing only)"
    )
    be.add_argument("--quick", action="store_true", help="smoke test: 3 runs, 1 warm-up")
    be.add_argument("--json", action="store_true", help="print JSON instead of a table")
    be.add_argument("--quiet", action="store_true", help="no progress bar")
    be.set_defaults(func=_bench)


def _add_int8_args(parser: argparse.ArgumentParser) -> None:
    from effnet.deploy.quantize import CALIBRATION_METHODS, FLOAT_OPS, QUANT_BACKENDS, ROUNDINGS, QuantizeConfig

    default = QuantizeConfig()
    group = parser.add_argument_group("int8 (post-training static quantization, judged on held-out photos)")
    group.add_argument("--int8", action="store_true", help="write an int8 model (ONNX QDQ, or OpenVINO IR)")
    group.add_argument("--calibration", type=Path, help="folder of real photos like the ones the model will see")
    group.add_argument("--holdout", type=Path, help="photos to judge on (default: calibration photos left over)")
    group.add_argument("--int8-backend", choices=QUANT_BACKENDS, default=default.backend, help="default %(default)s")
    group.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=default.method)
    group.add_argument("--keep-float", nargs="+", default=list(default.keep_float), help="ONNX node name prefixes")
    group.add_argument(
        "--float-ops",
        nargs="+",
        choices=FLOAT_OPS,
        default=list(default.float_ops),
        help="kinds of operation computed in float: depthwise convs, residual adds, the final linear classifier "
        "(auto: all three on openvino, none on onnxruntime)",
    )
    group.add_argument(
        "--weight-rounding",
        choices=ROUNDINGS,
        default=default.rounding,
        help="optimized: round each weight for its layer's outputs on the calibration photos; nearest: plain PTQ "
        "(auto: optimized on openvino, nearest on onnxruntime)",
    )
    group.add_argument(
        "--int8-overflow-fix",
        action="store_true",
        help="halve the first layer's weight range (NNCF), for CPUs without VNNI whose int8 sums can saturate",
    )
    group.add_argument("--calibration-size", type=_PHOTOS, default=default.calibration_size, help="default %(default)s")
    group.add_argument("--holdout-size", type=_PHOTOS, default=default.holdout_size, help="default %(default)s")
    group.add_argument(
        "--min-agreement",
        type=probability,
        default=default.min_agreement,
        help="top-1 agreement with fp32 (default 0.9)",
    )
    group.add_argument(
        "--force", action="store_true", help="write the model even when its check fails (int8: below --min-agreement)"
    )


def _export_int8(args: argparse.Namespace, model: Any) -> int:
    from effnet.deploy.quantize import Int8Refused, QuantizeConfig, export_int8, resolve_backend

    if args.calibration is None:
        raise ValueError("--int8 needs --calibration DIR: a folder of real photos like the ones the model will see")
    if args.format != "onnx":
        raise ValueError("--int8 writes ONNX (or OpenVINO IR); drop --format torchscript")
    config = QuantizeConfig(
        backend=args.int8_backend,
        method=args.calibration_method,
        keep_float=tuple(args.keep_float),
        float_ops=tuple(args.float_ops),
        rounding=args.weight_rounding,
        overflow_fix=args.int8_overflow_fix,
        calibration_size=args.calibration_size,
        holdout_size=args.holdout_size,
        min_agreement=args.min_agreement,
    )
    out = _int8_path(args.out, resolve_backend(config).backend, Path(args.model or model.spec.name).stem)
    try:
        report = export_int8(model, out, args.calibration, args.holdout, config, args.force, args.resolution)
    except Int8Refused as refused:
        _print_int8(refused.report, args.json)
        raise
    _print_int8(report, args.json)
    if not report.accepted:
        print(
            f"WARNING: --force wrote {report.path} although only {report.agreement:.1%} of held-out photos keep "
            f"their fp32 top-1 class (threshold {report.min_agreement:.0%}): check it before shipping",
            file=sys.stderr,
        )
    return 0


def _int8_path(out: Path | None, backend: str, stem: str) -> Path:
    """Where the int8 model goes: --out as given, except that OpenVINO IR is an .xml/.bin pair and keeps that
    name (said before anything is written); an .xml name for an ONNX file is refused."""
    if backend == "onnxruntime":
        if out is not None and out.suffix.lower() == ".xml":
            raise ValueError(
                f"--int8-backend onnxruntime writes ONNX, not OpenVINO IR: name it "
                f"{out.with_suffix('.onnx')}, or pass --int8-backend openvino for an .xml"
            )
        return out or Path(f"{stem}.int8.onnx")
    if out is None:
        return Path(f"{stem}.int8.xml")
    if out.suffix.lower() == ".xml":
        return out
    # OpenVINO's runtimes read an IR by its .xml and expect the weights in the .bin of the same name: an IR
    # under an .onnx name would be a file ONNX tools cannot open.
    final = out.with_suffix(".xml") if out.suffix.lower() == ".onnx" else out.with_name(out.name + ".xml")
    print(
        f"effnet export: the openvino int8 backend writes OpenVINO IR, an .xml/.bin pair, so {out} will be "
        f"{final} + {final.with_suffix('.bin').name}; for an int8 ONNX file pass --int8-backend onnxruntime",
        file=sys.stderr,
    )
    return final


def _print_int8(report: Any, as_json: bool = False) -> None:
    if as_json:
        print_json(vars(report) | {"speed_ratio": report.speed_ratio, "top1_change": report.top1_change})
        return
    recipe = "NNCF on OpenVINO" if report.backend == "openvino" else f"onnxruntime QDQ, {report.method} ranges"
    recipe += ", weights rounded for their outputs" if report.rounding == "optimized" else ""
    recipe += f", {report.in_float} in float" if report.float_ops else ""
    print(
        f"int8 ({recipe}, calibrated on {report.calibration_images} photos): top-1 agrees "
        f"with fp32 on {report.agreement:.1%} of {report.holdout_images} held-out photos "
        f"(threshold {report.min_agreement:.0%}); batch 1, 1 thread: fp32 onnxruntime {report.fp32_ms:.2f} ms, "
        f"int8 {report.int8_ms:.2f} ms ({report.speed_ratio:.2f}x)"
    )
    if report.top1_change is not None:  # the held-out photos' names gave their classes
        print(
            f"top-1 on the {report.holdout_images} labelled held-out photos: fp32 {report.fp32_top1:.1%}, int8 "
            f"{report.int8_top1:.1%} ({report.top1_change:+.1f} points)"
        )
    if report.written:
        print(f"wrote {report.path}")


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from effnet.deploy.predict import collect_images, predict_files

    paths = collect_images(args.inputs)
    model = _load(args, args.model, args.weights, need_weights=True)
    names = _class_names(args, model)
    failures = 0
    results = predict_files(model, paths, top_k=args.top_k, batch_size=args.batch_size, class_names=names)
    show_progress = show_bar(len(paths) > args.batch_size and not args.json and not args.quiet)
    for prediction in tqdm(results, total=len(paths), disable=not show_progress, unit="img", file=sys.stderr):
        if prediction.error is not None:
            failures += 1
            print(f"{prediction.path}: cannot read: {prediction.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(prediction.to_dict()))
            continue
        if not all(math.isfinite(score.probability) for score in prediction.top):
            failures += 1  # e.g. an image that overflows a layer: no class to print
            print(f"{prediction.path}: the model's outputs are not finite; not classified", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(prediction.to_dict()))
            continue
        print(prediction.path)
        for score in prediction.top:
            print(f"  {score.index:>5}  {score.probability:7.2%}  {score.name}")
    if failures:
        print(f"{failures} of {len(paths)} files could not be read; the others were classified", file=sys.stderr)
    return 1 if failures else 0


def _cam(args: argparse.Namespace) -> int:
    from PIL import Image

    from effnet.analysis.cam import image_cam, overlay, save_grid
    from effnet.deploy.predict import collect_images, load_image

    names = args.model or [None] * max(1, len(args.weights or []))
    weights = args.weights or [None] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"--weights needs one file per --model ({len(names)}), got {len(weights)}")
    exported = [str(w) for w in weights if is_exported(w)]
    if exported:
        raise ValueError(
            f"CAM needs the PyTorch model's feature maps and classifier weights, which an exported graph "
            f"({exported[0]}) lacks: pass the .safetensors or checkpoint it was exported from"
        )
    models = {}
    for name, w in zip(names, weights, strict=True):
        model = _load(args, name, w, need_weights=True)
        models[name or (Path(w).stem if w else model.spec.name)] = model
    paths = collect_images(args.inputs)
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder; give a folder for the overlays")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, row_labels, written, used = [], [], [], set()
    for path in paths:
        try:
            image = load_image(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            print(f"{path}: cannot read: {err}", file=sys.stderr)
            continue
        cells = []
        for name, model in models.items():
            names = _class_names(args, model)
            for method in args.method:
                for class_index in args.class_index or [None]:
                    result = image_cam(model, image, class_index, method, args.layer)
                    label = names[result.class_index] if names else str(result.class_index)
                    picture = overlay(image, result.heatmap, args.alpha)
                    tag = f"{method}" + (f"-{args.layer}" if method == "gradcam" else "")
                    out = _unique(
                        args.out / f"{Path(path).stem}_{Path(name).stem}_{tag}_{result.class_index}.png", used
                    )
                    atomic_write(out, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
                    written.append(
                        {
                            "file": out,
                            "input": path,
                            "model": name,
                            "method": tag,
                            "class_index": result.class_index,
                            "label": label,
                            "probability": result.probability,
                        }
                    )
                    if not args.json:
                        print(f"{out}  {name} {tag}: class {result.class_index} {label} (p={result.probability:.3f})")
                    cells.append((picture, f"{name} {tag}\n{result.class_index} {label} p={result.probability:.2f}"))
        rows.append(cells)
        row_labels.append(Path(path).name)
    if not rows:
        raise ValueError("none of the inputs could be read as an image")
    grid = save_grid(rows, args.out / "grid.png", row_labels)
    if args.json:
        print_json({"overlays": written, "grid": grid})
    else:
        print(f"wrote {len(written)} overlays and {grid}")
    return 0


def _unique(path: Path, used: set[Path]) -> Path:
    """`path`, or path-2, path-3, ... when an earlier input of this run (same file name elsewhere) took it."""
    candidate, number = path, 2
    while candidate in used:
        candidate, number = path.with_name(f"{path.stem}-{number}{path.suffix}"), number + 1
    used.add(candidate)
    return candidate


def _export(args: argparse.Namespace) -> int:
    from effnet.deploy.export import count_batchnorms, export_model, fold_batchnorm

    if is_exported(args.weights):
        raise ValueError(
            f"{args.weights} is already an exported graph: export from the .safetensors or checkpoint it came from"
        )
    ignored = [flag for flag, value in (("--calibration", args.calibration), ("--holdout", args.holdout)) if value]
    if ignored and not args.int8:
        raise ValueError(f"{ignored[0]} would be ignored: it is for int8 export; add --int8 or drop {ignored[0]}")
    model = _load(args, args.model, args.weights, need_weights=False)
    if args.format in ("timm", "torchvision"):
        from effnet.commands.interop import export_state_dict

        return export_state_dict(args, model)
    if args.int8:
        return _export_int8(args, model)
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    out = args.out or Path(f"{Path(args.model or model.spec.name).stem}{suffix}")
    # Staged beside `out` and renamed only once its check passed (or with --force): a failed export never
    # replaces a previous good file, and a file whose check failed is not left looking like an export.
    with staging_dir(out) as folder:
        check = export_model(
            model,
            folder / out.name,
            args.format,
            resolution=args.resolution,
            fold_bn=not args.no_fold_bn,
            opset=args.opset,
            check=not args.no_check,
        )
        passed, verdict = check.verdict(args.rtol, args.atol) if check is not None else (True, "not checked")
        size = (folder / out.name).stat().st_size
        written = passed or args.force
        if written:
            replace_files([folder / out.name], [out])
    check = replace(check, path=str(out)) if check is not None else None
    resolution = args.resolution or model.preprocess.input_size
    bns = count_batchnorms(model if args.no_fold_bn else fold_batchnorm(model))
    code = _export_outcome(out, passed, written)
    if args.json:
        print_json(
            {
                "path": out,
                "written": written,
                "format": args.format,
                "bytes": size,
                "input": ["batch", 3, "height", "width"],
                "traced_resolution": resolution,
                "batchnorm_layers": bns,
                "padding": model.spec.padding,
                "check": check,
                "relative_diff": check.relative_diff if check else None,
                "passed": passed,
                "verdict": verdict,
            }
        )
        return code
    print(
        f"{'wrote' if written else 'did not write'} {out} ({size / 1e6:.1f} MB): {args.format}, input "
        f"(batch, 3, height, width) traced at {resolution}x{resolution}, {bns} BatchNorm layers left, padding "
        f"{model.spec.padding}"
    )
    if check is None:
        return code
    sizes = ", ".join(map(str, check.batch_sizes))
    print(
        f"check: {check.runtime} vs PyTorch at batch sizes {sizes}, sizes "
        f"{', '.join(map(str, check.resolutions))} px: max |diff| = {check.max_abs_diff:.2e} "
        f"(outputs up to {check.max_abs_output:.3g}, relative {check.relative_diff:.1e})  {verdict}"
    )
    return code


def _export_outcome(out: Path, passed: bool, written: bool) -> int:
    """Exit code of a checked export, and a line on stderr when the check failed."""
    if passed:
        return 0
    if written:
        print(f"WARNING: --force wrote {out} although its check failed: check it before shipping", file=sys.stderr)
        return 0
    print(
        f"effnet export: the check failed, so {out} was not written (a previous file there is untouched); "
        "fix the cause, loosen --rtol / --atol, or pass --force to write it anyway",
        file=sys.stderr,
    )
    return 1


def _exported_candidate(path: Path) -> Any:
    """A bench row for an exported file, timed on the runtime that `effnet predict` would run it on."""
    from effnet.analysis.latency import Candidate

    probe = open_exported(path)
    size = probe.input_hw[0] if probe.input_hw else probe.preprocess.input_size

    def build(_example: Any, threads: int) -> tuple[Any, str]:
        model = open_exported(path, threads=threads)
        return model, model.runtime

    return Candidate(str(path), "effnet", str(path), size, build)


def _bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from effnet._util.cpuinfo import cpu_info
    from effnet.analysis.latency import BenchConfig, baseline_ratios, build_candidates, run_benchmark, speedups_over
    from effnet.deploy.runtimes import runtime_versions

    if not 1 <= args.batch_size <= 4096:
        raise ValueError(f"--batch-size must be in [1, 4096], got {args.batch_size}")
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise ValueError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    if args.calibration is not None and not args.int8:
        raise ValueError("--calibration would be ignored: it calibrates the --int8 rows; add --int8 or drop it")
    latency = args.mode == "latency"
    threads = args.threads or (1 if latency else torch.get_num_threads())
    runs, warmup = (3, 1) if args.quick else (args.runs, args.warmup)
    config = BenchConfig(args.mode, 1 if latency else args.batch_size, threads, warmup, runs, args.resolution)
    files = [Path(name) for name in args.models if is_exported(name)]
    candidates = [_exported_candidate(path) for path in files] + build_candidates(
        [name for name in args.models if not is_exported(name)],
        twins=not args.no_twins,
        resnets=not args.no_resnets,
        optimize=args.optimize,
        anchors=not args.no_anchors,
        int8=args.int8,
        calibration=args.calibration,
    )
    bar_on = show_bar(not (args.json or args.quiet))
    with tqdm(total=runs, desc="timing rounds", file=sys.stderr, disable=not bar_on) as bar:
        results = run_benchmark(candidates, config, lambda _done, _total: bar.update(1))
    ratios, speedups = baseline_ratios(results), speedups_over(results)
    if args.json:
        cpu = cpu_info()  # its flags are a frozenset: print_json writes them as a sorted list
        print_json(
            [
                vars(r)
                | {
                    "cpu": cpu,
                    "images_per_s": r.images_per_s,
                    "vs_baseline": ratios[r.label],
                    "resnet152_speedup": speedups.get(r.label),
                }
                for r in results
            ]
        )
        return 0
    print(
        f"{args.mode}: batch {config.batch_size}, {threads} thread(s), median of {runs} runs after {warmup} "
        f"warm-up, {runtime_versions()}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"CPU: {cpu_info().summary()}")
    print(
        f"{'model':<44}{'backend':<22}{'res':>4}{'median ms':>11}{'p10-p90 ms':>15}{'img/s':>9}"
        f"{'vs tv':>7}{'R152/x':>8}"
    )
    for r in results:
        speedup = f"{speedups[r.label]:>7.1f}x" if r.label in speedups else f"{'':>8}"
        ratio = f"{ratios[r.label]:>6.2f}x" if r.family != "resnet" else f"{'-':>7}"
        print(
            f"{r.label:<44}{r.backend:<22}{r.resolution:>4}{r.median_ms:>11.2f}"
            f"{f'{r.p10_ms:.1f}-{r.p90_ms:.1f}':>15}{r.images_per_s:>9.1f}{ratio}{speedup}"
        )
    print("vs tv: median / torchvision twin's eager median (same model); R152/x: ResNet-152 median / this median")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        # Other processes on the cores slow every row; with several threads each op waits for its slowest
        # thread, so multi-thread timings can be inflated far more than the single-thread ones.
        print(f"warning: load average {load:.1f} exceeds the {cores} cores: timings are inflated", file=sys.stderr)
    return 0
