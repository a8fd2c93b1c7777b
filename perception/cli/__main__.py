"""`python -m perception.cli`: the `perception` command, as the installed script runs it."""

import runpy

runpy.run_module("perception.cli.main", run_name="__main__", alter_sys=True)
