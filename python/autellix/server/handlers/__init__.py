"""One module per endpoint group; `autellix.server.routes` wires them to paths."""
