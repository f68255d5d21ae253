"""The supervisor (infra/supervise.py) lives as long as the service it restarts, one per service:
it stays small.  It once imported SQLAlchemy and tenacity for its backoff formula (37 MB of peak
RSS of a worker's 500 MB budget, bench/pipeline.py); now it imports the standard library and
careledger's stdlib-only backoff."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "tenacity", "pydantic", "faust", "kafka", "alembic")


def test_the_supervisor_imports_no_heavy_library() -> None:
    probe = ("import json, sys; import infra.supervise; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert not set(HEAVY) & set(loaded), f"infra.supervise loads {sorted(set(HEAVY) & set(loaded))}"
