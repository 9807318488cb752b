"""ch06_quantization: companion code; see README.md in this folder."""
