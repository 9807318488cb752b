"""Exercise stubs for chapter 2: fill them in, then `make grade EX=2.1`."""
