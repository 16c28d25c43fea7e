"""Layer 1: URLs, the embedded default server, connections, scripts."""
