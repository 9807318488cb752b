"""Reference solutions for the chapter 2 exercises."""
