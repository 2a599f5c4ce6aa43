"""One loader per model format, each producing a :class:`ml4ep.bdt.forest.Forest`."""
