"""Long work shows progress when stderr is not a terminal (issue 17: 25 minutes of ablation printed nothing
to a log file): a plain `description: done/total after N s` line every HEARTBEAT_S seconds."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = (
    "import time\n"
    "import headwiki.progress as p\n"
    "p.HEARTBEAT_S = 0.1\n"
    "with p.progress_task('slow step', 4) as bar:\n"
    "    for _ in range(4):\n"
    "        time.sleep(0.3)\n"
    "        bar.advance()\n"
)


def test_a_heartbeat_line_while_a_task_runs_without_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    beats = [line for line in proc.stderr.splitlines() if line.startswith("slow step: ")]
    assert len(beats) >= 3, proc.stderr
    done = [int(line.split(": ")[1].split("/")[0]) for line in beats]
    assert done == sorted(done) and done[-1] >= 2 and all(line.split("/")[1].startswith("4 after") for line in beats)
    assert proc.stdout == ""  # progress never goes to stdout
