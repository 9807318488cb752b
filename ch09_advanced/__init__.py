"""ch09_advanced: companion code; see README.md in this folder."""
