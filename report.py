"""`python -m report RUN_DIR ...`: learning curves and score tables from finished runs.

The entry point only; the report itself is analysis/report.py.
"""

from analysis.report import define_flags, main
from experiment.command_line import run_cli

if __name__ == "__main__":
    define_flags()
    run_cli(main)
