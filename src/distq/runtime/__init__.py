"""Layer 5: the forking pool, workers, time limits, worker control."""
