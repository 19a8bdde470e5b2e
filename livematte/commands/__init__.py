"""One module per ``livematte`` command; :mod:`livematte.cli` parses the command line and calls them."""
