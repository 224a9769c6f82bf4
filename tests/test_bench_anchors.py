"""`effnet bench`: the CPU instruction-set header and the exported-runtime anchor rows."""

from __future__ import annotations

import importlib.util

import pytest

from effnet._util.cpuinfo import cpu_info, parse_cpuinfo
from effnet.cli import main


def test_cpu_flags_parsed_for_the_bench_header():
    text = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
    info = parse_cpuinfo(text)
    assert info.model == "AMD EPYC 9R14"
    assert info.isa["AVX2"] and info.isa["AVX-512"] and info.isa["AVX-512 VNNI"] and info.isa["AVX-512 BF16"]
    assert not info.isa["AMX"] and "AMX:no" in info.summary() and "AVX-512 VNNI:yes" in info.summary()
    assert parse_cpuinfo("").model  # no /proc/cpuinfo (macOS, Windows): still a name, every flag "no"
    assert set(cpu_info().isa) == set(info.isa)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="pip install 'effnet[export]'")
def test_bench_prints_cpu_header_and_runtime_anchors(capsys):
    argv = ["bench", "efficientnet_b0", "--quick", "--resolution", "64", "--no-resnets", "--int8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "CPU: " in out and "AVX-512 VNNI:" in out and "AMX:" in out and "onnxruntime " in out
    assert "torchvision efficientnet_b0 onnxruntime" in out  # what a user gets by exporting torchvision's model
    assert "effnet efficientnet_b0 --int8" in out and "int8 " in out
    if importlib.util.find_spec("openvino") is not None:
        assert "effnet efficientnet_b0 openvino" in out and "openvino f32" in out
    else:
        pytest.skip("OpenVINO row not checked: pip install 'effnet[openvino]'")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="pip install 'effnet[export]'")
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_b0"])
def test_fixed_size_deployment_graph_has_no_pads_or_spatial_reducemeans(name, tmp_path):
    import onnx
    import torch

    import effnet
    from effnet.deploy.export import export_onnx, fold_batchnorm
    from effnet.deploy.runtimes import fix_input_size, freeze_same_padding, predictor

    torch.manual_seed(0)
    model = effnet.create_model(name, padding="same").eval()  # TF "SAME": asymmetric pads on strided convs
    x = torch.randn(1, 3, 65, 65)  # odd size: the pads differ before / after
    path = fix_input_size(export_onnx(freeze_same_padding(fold_batchnorm(model), x), tmp_path / "m.onnx", x), 65, 65)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Pad" not in ops and "ReduceMean" not in ops and "Shape" not in ops
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(predictor(path, "onnxruntime", 1)(x.numpy()) - expected).max() <= 1e-4 * abs(expected).max() + 1e-6
