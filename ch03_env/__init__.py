"""ch03_env: companion code; see README.md in this folder."""
