"""Appendix B: troubleshooting guide (B.1 errors, B.2 debugging, B.3 checklists)."""
