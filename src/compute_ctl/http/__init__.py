"""The HTTP API: an external listener (control plane, JWT-authorized) and an internal one."""
