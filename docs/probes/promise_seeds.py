"""The event promise test's six default models, seed by seed: which columns each sees without
their level, its threshold, and its false events on four weeks of fresh normal data.

    python docs/probes/promise_seeds.py            # seeds 0-5 (about 2 min on 2 cores)
    python docs/probes/promise_seeds.py 1 5        # some seeds

Even seeds carry a creeping column, odd seeds two near-constant columns, as in
tests/integration/test_event_promise.py."""

import sys

from aemon import Detector
from aemon.synthetic import make_series

total = 0
for seed in map(int, sys.argv[1:] or range(6)):
    shape = {"flat_columns": 2} if seed % 2 else {"creeping_columns": 1}
    reference, _, _ = make_series(4_032, 3, seed=100 + seed, **shape)
    det = Detector(seed=seed, progress=False).fit(reference)
    fresh, _, _ = make_series(8_064, 3, seed=200 + seed, start="2026-02-01", **shape)
    res = det.score(fresh)
    assert res.events is not None
    longest = int((res.events.end_index - res.events.start_index + 1).max()) if len(res.events) else 0
    total += len(res.events)
    print(
        f"seed {seed}: level-free {det.level_free_columns}, threshold {det.threshold_:.4g} "
        f"(training part {det.threshold_info_.params['training_span_threshold']:.4g}), "
        f"{len(res.events)} false events, {res.is_anomaly.mean():.2%} of rows flagged, "
        f"longest alarm {longest * 5 / 60:.1f} h",
        flush=True,
    )
print(f"{total} false events in {4 * (len(sys.argv[1:]) or 6)} weeks")
