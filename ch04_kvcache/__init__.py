"""ch04_kvcache: companion code; see README.md in this folder."""
