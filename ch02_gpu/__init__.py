"""ch02_gpu: companion code; see README.md in this folder."""
