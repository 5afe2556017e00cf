"""What the tests share: paths, specs, a real PostgreSQL server, the processes of a whole
compute (`harness`), sidecar and service stand-ins, TLS material, and the one way to wait for a
condition (`waiting`). Test modules import from here; nothing here imports a test module."""
