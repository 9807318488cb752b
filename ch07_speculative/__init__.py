"""ch07_speculative: companion code; see README.md in this folder."""
