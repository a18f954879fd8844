"""benchmarks/scorer.py runs end to end at a tiny size (so it cannot rot unnoticed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The shared data folder beside the checkout (research use only: never copied in).
ML100K = next((path for path in (ROOT.parent / "shared" / "data" / "ml-100k" / "u.data",
                                 Path("/work/shared/data/ml-100k/u.data")) if path.exists()),
              ROOT.parent / "shared" / "data" / "ml-100k" / "u.data")


@pytest.mark.skipif(not ML100K.exists(), reason="ML-100K is not on this machine")
def test_scorer_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scorer.py"), "--data",
                    str(ML100K), "--events", "400", "--epochs", "1", "--reps", "1",
                    "--big-items", "3000", "--big-events", "300", "--results-dir",
                    str(tmp_path)], check=True, cwd=ROOT, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "scorer.json").read_text())
    for scenario in ("ml100k", "synthetic_big"):
        got = result[scenario]
        assert got["pass_through"]["triggers"] > 0
        for tag in ("online", "deep"):
            # Every variant answered the same triggers of the same stream.
            assert got[tag]["scorer"]["triggers"] == got[tag]["reference"]["triggers"] > 0
            assert got[tag]["speedup_over_reference"] > 0
        assert got["retrieval_floor_us"] > 0
    assert result["synthetic_big"]["catalogue_items"] == 3000
