"""Reference solutions to the chapter 4 exercises."""
