"""The commands of the `portdoctor` command line, one module per command (or pair of related
commands). Each parses its arguments, calls the library and renders the result; `portdoctor.cli`
imports a command's module only when that command runs."""
