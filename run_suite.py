#!/usr/bin/env python3
"""Run a suite (``python run_suite.py --help``): the command line of ``autowu_bench.launch.cli``, the same
as the installed ``autowu-bench`` command; kept at the repository's root for ``ray submit cluster.yaml
run_suite.py`` and ``ray job submit ... -- python run_suite.py``."""

import sys

from autowu_bench.launch.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="run_suite.py"))
