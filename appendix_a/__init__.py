"""Appendix A: tools and resources (A.1 framework comparison, A.5 glossary)."""
