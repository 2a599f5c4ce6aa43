"""Graph passes: folding and shapes, fusion, dead code, memory planning."""
