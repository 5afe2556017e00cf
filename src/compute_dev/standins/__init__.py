"""The storage and service stand-ins: servers that speak the real wire protocols (the
pageserver's libpq and gRPC listeners, the safekeepers, the control plane's spec endpoint,
endpoint storage, the extension gateway), and the timeline store they serve from.

They know nothing of the command line: `compute_dev.commands` starts them, and the tests start
them in-process."""
