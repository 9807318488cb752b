"""Reference solutions of chapter 3 exercises."""
