"""ch05_scheduling: companion code; see README.md in this folder."""
