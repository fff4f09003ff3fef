"""Score the sets of ops_sets_gen.py as `aemon train` / `aemon score` would, with no options
(`Detector()` on the reference less the last HOLDOUT_FRACTION, which the train flow holds
out), and count Orion-style overlap events against the labels.

Usage: python docs/probes/ops_sets_score.py FOLDER [SEED]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from aemon import Detector
from aemon.config import HOLDOUT_FRACTION

root = Path(sys.argv[1])
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
total = np.zeros(3, int)
total_short = 0  # incidents found by alarms of at most 24 h
for folder in sorted(p for p in root.iterdir() if p.is_dir()):
    ref = pd.read_csv(folder / "reference.csv", parse_dates=["timestamp"])
    test = pd.read_csv(folder / "test.csv", parse_dates=["timestamp"])
    labels = json.loads((folder / "labels.json").read_text())
    start = time.perf_counter()
    n_fit = len(ref) - int(len(ref) * HOLDOUT_FRACTION)  # flows.train.split_holdout's cut, to the row
    det = Detector(progress=False, seed=seed).fit(ref.iloc[:n_fit])
    res = det.score(test)
    stamps = test["timestamp"].to_numpy()
    truth = np.zeros(len(test), bool)
    incidents = []
    for lab in labels:
        a = int(np.searchsorted(stamps, np.datetime64(pd.Timestamp(lab["start"]))))
        b = int(np.searchsorted(stamps, np.datetime64(pd.Timestamp(lab["end"])), "right")) - 1
        truth[a : b + 1] = True
        incidents.append((a, b, lab["kind"]))
    events = list(zip(res.events.start_index, res.events.end_index, strict=True))
    found = [any(a <= e1 and e0 <= b for e0, e1 in events) for a, b, _ in incidents]
    fp = sum(not any(a <= e1 and e0 <= b for a, b, _ in incidents) for e0, e1 in events)
    step_h = (stamps[1] - stamps[0]) / np.timedelta64(1, "h")
    short = [(e0, e1) for e0, e1 in events if (e1 - e0 + 1) * step_h <= 24]
    total_short += sum(any(a <= e1 and e0 <= b for e0, e1 in short) for a, b, _ in incidents)
    counts = (sum(found), fp, len(incidents) - sum(found))
    total += counts
    longest = max((e1 - e0 + 1 for e0, e1 in events), default=0) * step_h
    print(
        f"{folder.name:14s} threshold {det.threshold_:.4g}  TP/FP/FN {'/'.join(map(str, counts))}  "
        f"AUPRC {average_precision_score(truth, res.scores):.3f}  rows flagged {res.is_anomaly.mean():.3f}  "
        f"longest alarm {longest:.1f} h  missed {[k for (_, _, k), f in zip(incidents, found, strict=True) if not f]}  "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
tp, fp, fn = total
print(
    f"all: TP/FP/FN {tp}/{fp}/{fn}, event F1 {2 * tp / (2 * tp + fp + fn):.3f}; "
    f"{total_short} of {tp + fn} found by alarms of at most 24 h"
)
