"""ml4ep.bench: CPU time and memory of common HEP models across inference engines."""
