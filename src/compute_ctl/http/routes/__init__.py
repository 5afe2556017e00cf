"""One module per route; each handler's docstring lists every status code it returns."""
