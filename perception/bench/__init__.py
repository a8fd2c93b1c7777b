"""Benchmarking, apart from the runtime: latency and throughput of the pipeline against baselines, in one
run (the `perception bench` command is perception/cli/bench.py).

Every mode runs on the same video with the same warm detector, set up as `perception run` sets it up for
the mode (in fast mode two requests in flight by default, see `detector.requests`), and the modes
alternate over `--repeat` rounds, so machine drift (other users of a shared machine) hits them alike:

- `pipeline`: the real threaded Pipeline (grab, detect, track+TTC, sink threads), as `perception run`
  runs it, with an in-memory sink instead of video and event files.
- `sequential`: the same stage code in one plain loop, with a detector set up for one request at a time
  (all threads on it): what the threads buy.
- `detector`: the detector alone on frames decoded beforehand, its requests in parallel as in the
  pipeline: the limit the pipeline can approach.
- `ultralytics`: `YOLO(model).track(source, stream=True)`, the usual way to do the same job.

Warm-up frames (the first `bench.warmup_frames` of each run) are left out of every figure and reported
apart. Outputs: bench.json (every figure), report.md (tables with ratios), and two PNG plots.
"""

from __future__ import annotations

from perception.bench.stats import latency_stats

__all__ = ["latency_stats"]
