"""The command line: `serve` runs the service; `status` and `tenant` talk to a running one over HTTP."""
