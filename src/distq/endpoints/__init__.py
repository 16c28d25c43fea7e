"""Layer 4: endpoints — tasks (and, later, services and actors) on the queue core."""
