"""Reference solutions for chapter 6 exercises."""
