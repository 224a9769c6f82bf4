"""`effnet export --format timm|torchvision`: a state dict the other library's twin model loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from effnet._util.console import print_json
from effnet.models.net import EfficientNet


def export_state_dict(args: argparse.Namespace, model: EfficientNet) -> int:
    """Write the model's tensors under timm's or torchvision's key names and say which builder loads them."""
    from effnet.weights import find_twin, save_weights

    if args.int8:
        raise ValueError(f"--int8 writes ONNX or OpenVINO IR; drop it for --format {args.format}")
    twin = find_twin(model, args.format, exact=not args.inexact)  # refuses before anything is written
    out = args.out or Path(f"{Path(args.model or model.spec.name).stem}.{args.format}.safetensors")
    save_weights(model, out, layout=args.format, exact=not args.inexact)
    load = twin.describe(model.num_classes)
    if args.json:
        print_json({"path": out, "format": args.format, "bytes": out.stat().st_size, "twin": load})
        return 0
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {args.format} state dict for {load}")
    print(f"load it with: model.load_state_dict(safetensors.torch.load_file({str(out)!r}))")
    return 0
