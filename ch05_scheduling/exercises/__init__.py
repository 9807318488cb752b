"""Chapter 5 exercises (stubs): 5.1 static vs continuous batching, 5.2 tuning for two scenarios."""
