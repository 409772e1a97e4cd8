"""Installing agents from git repositories and folders (`al add`, `al update`)."""
