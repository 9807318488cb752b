"""Shared utilities for every chapter: paths, devices, the embedded model, datasets, benchmarks, reports, CLI."""
