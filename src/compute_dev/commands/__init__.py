"""The `compute-dev` subcommands: each parses its arguments, starts stand-ins from
`compute_dev.standins` or reads a spec the way compute_ctl does, and reports on stdout."""
