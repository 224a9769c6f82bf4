"""`effnet bench`: the CPU instruction-set header and the exported-runtime anchor rows."""

from __future__ import annotations

import importlib.util

import pytest

from effnet.analysis.cpuinfo import cpu_info, parse_cpuinfo
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
