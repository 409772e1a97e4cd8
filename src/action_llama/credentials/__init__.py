"""Credentials: the store outside projects, the builtin types, and staging them for a run."""
