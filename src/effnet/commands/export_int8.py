"""`effnet export --int8`: post-training static quantization, judged on held-out photos before it is written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from effnet._util.console import print_json
from effnet.commands._flags import int8_config


def run_int8(args: argparse.Namespace, model: Any) -> int:
    """Quantize, judge and write the model (refused below --min-agreement unless --force)."""
    from effnet.deploy.quantize import Int8Refused, export_int8, resolve_backend

    if args.calibration is None:
        raise ValueError("--int8 needs --calibration DIR: a folder of real photos like the ones the model will see")
    if args.format != "onnx":
        raise ValueError("--int8 writes ONNX (or OpenVINO IR); drop --format torchscript")
    config = resolve_backend(int8_config(args))  # once: the output's name depends on the backend it picks
    out = _int8_path(args.out, config.backend, Path(args.model or model.spec.name).stem)
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
        f"(threshold {report.min_agreement:.0%}); batch 1, 1 thread: fp32 onnxruntime {report.fp32_latency_ms:.2f} ms, "
        f"int8 {report.int8_latency_ms:.2f} ms ({report.speed_ratio:.2f}x)"
    )
    if report.top1_change is not None:  # the held-out photos' names gave their classes
        print(
            f"top-1 on the {report.holdout_images} labelled held-out photos: fp32 {report.fp32_top1:.1%}, int8 "
            f"{report.int8_top1:.1%} ({report.top1_change:+.1f} points)"
        )
    if report.written:
        print(f"wrote {report.path}")
