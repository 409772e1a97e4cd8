"""The layered image chain: planning (pure) and building (Docker I/O)."""
