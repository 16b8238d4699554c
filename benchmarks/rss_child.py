"""(h): rate one window in a process of its own and report its peak RSS (VmHWM).

``python -m benchmarks.rss_child URL PRICEBOOK_DIR WINDOW_KEY RUN_ID`` prints one JSON line:
``{"peak_rss_kib": ..., "seconds": ...}``. The peak covers the whole process: interpreter,
imports, connection, extraction, pricing and the reconciled write.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's high-water mark of resident memory, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str]) -> int:
    url, pricebook_dir, window_key, run_id = argv
    from rating_pipeline.pricebook.loader import load_pricebooks
    from rating_pipeline.warehouse.database import connect
    from rating_pipeline.warehouse.engine import rate_window
    from rating_pipeline.windows import Window

    pricebooks = load_pricebooks(Path(pricebook_dir))
    window = Window.from_key(window_key)
    with connect(url) as conn:
        began = time.perf_counter()
        rate_window(conn, window, pricebooks, run_id)
        seconds = time.perf_counter() - began
    print(json.dumps({"peak_rss_kib": peak_rss_kib(), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
