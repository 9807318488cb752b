"""Reference solutions for the chapter 8 exercises."""
