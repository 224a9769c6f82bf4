"""From trained weights to a deployed model: export (ONNX, TorchScript, OpenVINO), the exported graph and its
runtimes (`runtimes`), int8 quantization (`quantize`, `int8_rounding`) and classification of images (`predict`)."""
