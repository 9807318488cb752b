"""Chapter 4 exercises (stubs for the reader): see each file's docstring."""
