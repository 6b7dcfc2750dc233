"""Shared test set-up: the repository on sys.path and the test-only toy stages registered."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("WIKIGRAPH_EXTRA_STAGES", "tests.toy_stages")
