"""Chapter 1: the economics of inference, computed from this repository's measured ratios.

Chapter 1 comes first in the book but is computed last: it imports only ``common`` and reads the figures
the later chapters measured from the committed reference report (``reports/reference/*/results.json``).
"""
