"""Layer 3: Disque's job model as Lua scripts and a thin client API."""
