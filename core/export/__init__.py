"""Export: models out as ONNX, LiteRT (float and int8) and SavedModel, parity checked."""
