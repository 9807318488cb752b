"""appendix_c_benchmarks: companion code; see README.md in this folder."""
