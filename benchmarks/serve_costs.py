"""Where a served request's time goes, measured in one process: decoding, preprocessing and the forward pass.

    OMP_NUM_THREADS=1 python benchmarks/serve_costs.py            # Lite0, batches 1 2 4 8, threads 1 and 2
    OMP_NUM_THREADS=1 python benchmarks/serve_costs.py --openvino # ... and OpenVINO on the same export

The forward pass is timed for both runtimes of `effnet serve` (onnxruntime, the BN-folded channels-last PyTorch
model; with --openvino also OpenVINO's CPU plugin in f32 on the same fixed-size export, one graph per batch size),
at each batch size and intra-op thread count, interleaved round by round so that load drifting over the
run hits every row alike; each figure is the median over rounds. chelsea (451x300 JPEG) is the image, as in
`benchmarks/serve_load.py`. The HTTP side (uvicorn, FastAPI, multipart) is what `serve_load.py`'s CPU columns
add on top of these.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def median_ms(function: Callable[..., object], repeats: int, *args: object) -> float:
    """Median wall time of `function(*args)` in ms over `repeats` calls (after one warm-up call)."""
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class _OpenVINOBatches:
    """OpenVINO on effnet's fixed-size deployment export, one compiled graph per batch size, like a Classifier."""

    def __init__(self, model: torch.nn.Module, threads: int, batches: list[int], folder: Path):
        from effnet.deploy.runtimes import export_deploy_graph, openvino_predictor

        size = model.preprocess.input_size
        self.predictors = {
            batch: openvino_predictor(
                export_deploy_graph(model, folder / f"b{batch}.onnx", torch.zeros(batch, 3, size, size)), threads
            )
            for batch in batches
        }

    def logits(self, batch: torch.Tensor) -> object:
        return self.predictors[len(batch)](batch.numpy())


def openvino_runners(name: str, threads: list[int], batches: list[int]) -> dict[tuple[str, int], object]:
    """("openvino", threads) -> runner over the pretrained model `name` (its exports kept in a temp folder)."""
    import effnet

    model = effnet.create_model(name, pretrained=True).eval()
    folder = Path(tempfile.mkdtemp(prefix="effnet-serve-costs-"))
    return {("openvino", n): _OpenVINOBatches(model, n, batches, folder / str(n)) for n in threads}


def main() -> None:
    """Time each step and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0", help="model with a pretrained record")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="batch sizes (default 1 2 4 8)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads (default 1 2)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row and round (default 5)")
    parser.add_argument("--openvino", action="store_true", help="also time OpenVINO (pip install 'effnet[openvino]')")
    args = parser.parse_args()

    from PIL import Image
    from skimage import data

    from effnet._util.cpuinfo import cpu_info
    from effnet.serve.classifier import load_classifier
    from effnet.serve.config import ModelSource
    from effnet.serve.uploads import decode_image

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    source = ModelSource(args.model, pretrained=True)
    runtimes = {
        (runtime, threads): load_classifier(source, threads, runtime)
        for runtime in ("onnxruntime", "pytorch")
        for threads in args.threads
    }
    if args.openvino:
        runtimes.update(openvino_runners(args.model, args.threads, args.batches))
    image = decode_image(jpeg, "chelsea.jpg", 40_000_000)
    classifier = next(iter(runtimes.values()))
    steps: dict[str, Callable[[], object]] = {
        "decode JPEG (decode_image)": lambda: decode_image(jpeg, "chelsea.jpg", 40_000_000),
        "resize + crop + normalize (prepare)": lambda: classifier.prepare(image),
    }
    one = classifier.prepare(image)[None]
    rows: dict[tuple[str, int, int], list[float]] = {}
    step_times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        torch.set_num_threads(1)
        for name, step in steps.items():
            step_times[name].append(median_ms(step, 4 * args.repeats))
        for (runtime, threads), model in runtimes.items():
            torch.set_num_threads(threads)  # onnxruntime sessions carry their own count
            for size in args.batches:
                batch = one.expand(size, -1, -1, -1).contiguous()
                rows.setdefault((runtime, threads, size), []).append(median_ms(model.logits, args.repeats, batch))
    print(
        f"{cpu_info().short()}; load average {load_before} before, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after; torch {torch.__version__}",
        file=sys.stderr,
    )
    print("| step | ms |\n|---|---:|")
    for name, values in step_times.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print("\n| runtime | threads | batch | ms per pass | ms per image | images/s (one pass at a time) |")
    print("|---|---:|---:|---:|---:|---:|")
    for (runtime, threads, size), values in rows.items():
        ms = statistics.median(values)
        print(f"| {runtime} | {threads} | {size} | {ms:.1f} | {ms / size:.2f} | {1000 * size / ms:.0f} |")


if __name__ == "__main__":
    main()
