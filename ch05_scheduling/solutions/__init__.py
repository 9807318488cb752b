"""Reference solutions of the chapter 5 exercises."""
