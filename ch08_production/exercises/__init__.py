"""Exercise stubs for chapter 8: fill them in, then grade with `python -m common.grade 8.N`."""
