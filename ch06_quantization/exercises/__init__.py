"""Exercise stubs for chapter 6 (graded with ``python -m common.grade 6.N``)."""
