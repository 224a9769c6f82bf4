"""`effnet export`: ONNX or TorchScript (BatchNorm folded, checked against PyTorch), int8, or a state dict in timm's
or torchvision's layout."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from effnet._util.validation import MAX_SIDE, finite_number, whole_number
from effnet.commands._flags import FRACTION, add_int8_flags, add_model_flags, add_output_flags

NAME = "export"
HELP = "export to ONNX or TorchScript (BN folded) and check it"

_ATOL = finite_number(0.0, 1e6, above=True)
_EXPORT_SIDE = whole_number(32, MAX_SIDE)
_OPSET = whole_number(1, 99)  # the exporter says which opsets it supports


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export`."""
    ex = subparsers.add_parser(NAME, help=HELP)
    add_model_flags(ex)
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
        "--rtol", type=FRACTION, default=1e-4, help="max |exported - PyTorch| / max |output| allowed (default 1e-4)"
    )
    ex.add_argument("--atol", type=_ATOL, help="an absolute bound on |exported - PyTorch| instead of --rtol")
    add_output_flags(ex, "print the file, its input and the check as JSON")
    add_int8_flags(ex)
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the model the flags describe; exit code 1 when its check failed (and it was not written)."""
    from effnet._util.fileio import replace_files, staging_dir
    from effnet.commands._source import load_from_flags
    from effnet.deploy.export import export_model

    _check_flags(args)
    model = load_from_flags(args, args.model, args.weights, need_weights=False)
    if args.format in ("timm", "torchvision"):
        from effnet.commands.interop import export_state_dict

        return export_state_dict(args, model)
    if args.int8:
        from effnet.commands.export_int8 import run_int8

        return run_int8(args, model)
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
    code = _outcome(out, passed, written)
    _report(args, model, out, size, check, (passed, verdict), written)
    return code


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse flag combinations that would export the wrong thing or ignore a flag."""
    from effnet.deploy.runtimes import is_exported

    if is_exported(args.weights):
        raise ValueError(
            f"{args.weights} is already an exported graph: export from the .safetensors or checkpoint it came from"
        )
    int8_only = {"--calibration": args.calibration, "--holdout": args.holdout, "--random-weights": args.random_weights}
    ignored = [flag for flag, value in int8_only.items() if value]
    if ignored and not args.int8:
        raise ValueError(f"{ignored[0]} would be ignored: it is for int8 export; add --int8 or drop {ignored[0]}")
    if args.int8 and not (args.pretrained or args.weights or args.random_weights):
        # A random-init model quantizes and even passes its agreement check: say so instead of writing it quietly.
        raise ValueError(
            "--int8 would quantize random weights: pass --pretrained or --weights FILE (--random-weights if meant)"
        )


def _report(
    args: argparse.Namespace, model: Any, out: Path, size: int, check: Any, judged: tuple[bool, str], written: bool
) -> None:
    """What was written (or not) and how its check went (passed?, verdict): a JSON document or two lines."""
    from effnet._util.console import print_json
    from effnet.deploy.export import count_batchnorms, fold_batchnorm

    passed, verdict = judged
    resolution = args.resolution or model.preprocess.input_size
    bns = count_batchnorms(model if args.no_fold_bn else fold_batchnorm(model))
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
        return
    print(
        f"{'wrote' if written else 'did not write'} {out} ({size / 1e6:.1f} MB): {args.format}, input "
        f"(batch, 3, height, width) traced at {resolution}x{resolution}, {bns} BatchNorm layers left, padding "
        f"{model.spec.padding}"
    )
    if check is None:
        return
    sizes = ", ".join(map(str, check.batch_sizes))
    print(
        f"check: {check.runtime} vs PyTorch at batch sizes {sizes}, sizes "
        f"{', '.join(map(str, check.resolutions))} px: max |diff| = {check.max_abs_diff:.2e} "
        f"(outputs up to {check.max_abs_output:.3g}, relative {check.relative_diff:.1e})  {verdict}"
    )


def _outcome(out: Path, passed: bool, written: bool) -> int:
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
