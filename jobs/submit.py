"""WikiGraph command line: `python jobs/submit.py stage=<name>|all key=value ...` (see --help)."""

import sys
from pathlib import Path

# Runnable as a script from a checkout or a job's code snapshot, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
