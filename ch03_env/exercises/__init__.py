"""Exercise stubs of chapter 3 (the reader edits these; graded by python -m common.grade 3.N)."""
