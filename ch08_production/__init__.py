"""ch08_production: companion code; see README.md in this folder."""
