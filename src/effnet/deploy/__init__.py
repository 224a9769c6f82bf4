"""From trained weights to a deployed model: export (ONNX, TorchScript, OpenVINO), the exported graph and its
runtimes (`runtimes`), int8 quantization (`quantize`; its two quantizers `int8_quantizers`; `int8_rounding`) and
classification of images (`predict`)."""
