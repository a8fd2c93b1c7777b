"""The command line: `perception` and its subcommands (`main`), the flags that set config keys (`flags`),
`run` and its outputs (`run`, `run_outputs`), the detector, bench and Triton commands, Ctrl-C at start-up
(`interrupts`). Imports nothing here: `main` installs the signal handlers before the libraries load."""
