"""Generate 6 realistic ops/monitoring data sets with labelled incidents.

Written by a newcomer's probe on 2026-12-05 without reading aemon's own generators, and kept
so that the README's "Unseen ops data" figures can be reproduced. Deterministic (fixed seed).
Usage: python docs/probes/ops_sets_gen.py FOLDER   (then docs/probes/ops_sets_score.py FOLDER)
Each set: FOLDER/<name>/{reference.csv,test.csv,labels.json}
labels.json: list of {"kind", "start", "end", "columns"} (timestamps inclusive).
"""
import json
import os
import sys

import numpy as np
import pandas as pd
from scipy.signal import lfilter

ROOT = sys.argv[1] if len(sys.argv) > 1 else "ops_sets"
SEED = 20261207


# ----------------------------------------------------------------- helpers
def ar1(rng, n, tau, sigma):
    """Stationary-ish AR(1) with correlation time tau (steps) and sd sigma."""
    phi = np.exp(-1.0 / tau)
    e = rng.normal(0, sigma * np.sqrt(1 - phi**2), n)
    x0 = rng.normal(0, sigma)
    x = lfilter([1.0], [1.0, -phi], e, zi=[phi * x0])[0]
    return x


def bump(h, c, w):
    d = (h - c + 12) % 24 - 12
    return np.exp(-0.5 * (d / w) ** 2)


DOW_FACTOR = np.array([1.0, 1.03, 1.02, 1.0, 0.94, 1.0, 1.0])


def profile(ts, peaks, floor, wk_scale, wk_shift, drop=None, floor_wk=None):
    """Daily profile: floor + gaussian peaks (hour, width_h, amplitude).
    Weekends: peaks scaled by wk_scale and shifted later by wk_shift hours.
    drop: int array (per row) naming a peak index to suppress (-1 = none)."""
    h = (ts.hour + ts.minute / 60.0).to_numpy(float)
    dow = ts.dayofweek.to_numpy()
    wk = dow >= 5
    hh = np.where(wk, h - wk_shift, h)
    base = np.where(wk, floor if floor_wk is None else floor_wk, floor).astype(float)
    total = base.copy()
    for k, (c, w, a) in enumerate(peaks):
        comp = a * bump(hh, c, w)
        comp = np.where(wk, comp * wk_scale, comp * DOW_FACTOR[dow])
        if drop is not None:
            comp = np.where(drop == k, comp * 0.12, comp)
        total += comp
    return total


def blips(rng, n, steps_per_day, per_day, max_len, lo, hi):
    """Benign short multiplicative blips (in reference and test alike)."""
    m = np.ones(n)
    k = rng.poisson(per_day * n / steps_per_day)
    for _ in range(k):
        i = rng.integers(0, n)
        L = rng.integers(1, max_len + 1)
        m[i:i + L] *= rng.uniform(lo, hi)
    return m


def smooth(x, k):
    return pd.Series(x).rolling(k, center=True, min_periods=1).median().to_numpy()


class Plan:
    """Incident plan on the test part of a series."""

    def __init__(self, ts, n_ref):
        self.ts = ts
        self.n_ref = n_ref
        self.labels = []
        self.step_min = int((ts[1] - ts[0]).total_seconds() // 60)

    def idx(self, day, hour, minutes):
        """Row range of an incident starting `day` days + `hour` h into the test
        part and lasting `minutes` minutes (inclusive)."""
        t0 = self.ts[self.n_ref] + pd.Timedelta(days=day) + pd.Timedelta(hours=hour)
        i0 = int(self.ts.searchsorted(t0))
        L = max(1, int(round(minutes / self.step_min)))
        i1 = i0 + L - 1
        assert i1 < len(self.ts), (day, hour, minutes)
        return i0, i1

    def add(self, kind, i0, i1, columns, note=""):
        for lab in self.labels:
            a, b = lab["_rows"]
            gap = 6 * 60 // self.step_min
            assert i1 + gap < a or i0 > b + gap, f"incidents too close: {kind} vs {lab['kind']}"
        self.labels.append({
            "kind": kind,
            "start": str(self.ts[i0]),
            "end": str(self.ts[i1]),
            "columns": columns,
            "note": note,
            "_rows": (i0, i1),
        })

    def peak_drop(self, day, peak_index, c, w):
        """A missing daily peak: returns drop array and label rows."""
        drop = np.full(len(self.ts), -1)
        day0 = (self.ts[self.n_ref] + pd.Timedelta(days=day)).normalize()
        sel = (self.ts >= day0) & (self.ts < day0 + pd.Timedelta(days=1))
        drop[sel] = peak_index
        t0 = day0 + pd.Timedelta(hours=c - 1.5 * w)
        t1 = day0 + pd.Timedelta(hours=c + 1.5 * w)
        i0 = int(self.ts.searchsorted(t0))
        i1 = int(self.ts.searchsorted(t1)) - 1
        return drop, i0, i1


def variance_burst(x, i0, i1, k, win):
    s = smooth(x, win)
    seg = slice(i0, i1 + 1)
    x = x.copy()
    x[seg] = s[seg] + (x[seg] - s[seg]) * k
    return x


def ramp(i0, i1, top):
    """multiplier rising linearly from 1 to `top` over the incident."""
    return 1 + (top - 1) * np.linspace(0, 1, i1 - i0 + 1)


def write(name, ts, n_ref, cols, plan, meta):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    df = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S")})
    for c, v in cols.items():
        df[c] = v
    df.iloc[:n_ref].to_csv(os.path.join(d, "reference.csv"), index=False)
    df.iloc[n_ref:].to_csv(os.path.join(d, "test.csv"), index=False)
    labs = [{k: v for k, v in lab.items() if k != "_rows"} for lab in plan.labels]
    labs.sort(key=lambda r: r["start"])
    with open(os.path.join(d, "labels.json"), "w") as f:
        json.dump(labs, f, indent=1)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: {n_ref} reference rows, {len(ts) - n_ref} test rows, "
          f"{len(cols)} columns, {len(labs)} incidents")


def timeline(start, ref_days, test_days, step_min):
    n_ref = ref_days * 24 * 60 // step_min
    n = n_ref + test_days * 24 * 60 // step_min
    ts = pd.date_range(start, periods=n, freq=f"{step_min}min")
    return ts, n_ref, n


# ------------------------------------------------- 1. checkout requests/min
def checkout_rpm(rng):
    ts, n_ref, n = timeline("2026-02-04 00:00", 21, 14, 5)
    spd = 288
    p = Plan(ts, n_ref)
    peaks = [(12.5, 1.6, 85.0), (20.5, 2.0, 120.0)]
    drop, d0, d1 = p.peak_drop(8, 1, 20.5, 2.0)  # a Thursday: evening peak missing
    prof = profile(ts, peaks, 14.0, 0.8, 1.5, drop=drop)
    t_days = np.arange(n) / spd
    trend = 1 + 0.0025 * t_days                       # +~9 % over 5 weeks
    wander = np.exp(ar1(rng, n, 6 * 12, 0.05))
    rate = prof * trend * wander * blips(rng, n, spd, 0.8, 1, 1.2, 1.4)
    p.add("missing_daily_peak", d0, d1, ["checkout_rpm"], "evening peak absent on a weekday")
    inc = np.ones(n)
    i0, i1 = p.idx(0, 13.0, 15); inc[i0:i1 + 1] *= 1.6; p.add("spike", i0, i1, ["checkout_rpm"], "flash sale link")
    i0, i1 = p.idx(1, 19.5, 45); inc[i0:i1 + 1] *= 0.55; p.add("dip", i0, i1, ["checkout_rpm"], "payment provider errors")
    i0, i1 = p.idx(2, 9.0, 180); inc[i0:i1 + 1] *= 0.68; p.add("level_shift", i0, i1, ["checkout_rpm"], "checkout broken for one browser")
    i0, i1 = p.idx(4, 3.0, 20); inc[i0:i1 + 1] *= 1.6; p.add("spike", i0, i1, ["checkout_rpm"], "night spike, bot")
    i0, i1 = p.idx(5, 14.0, 240); inc[i0:i1 + 1] *= ramp(i0, i1, 1.5); p.add("ramp", i0, i1, ["checkout_rpm"], "card-testing bot ramps up")
    i0, i1 = p.idx(10, 1.0, 60); inc[i0:i1 + 1] *= 0.5; p.add("dip", i0, i1, ["checkout_rpm"], "night dip, region down")
    x = rng.poisson(rate * inc * 5) / 5.0 * (1 + rng.normal(0, 0.02, n))
    # sensor-level incidents
    i0, i1 = p.idx(6, 11.0, 120); x[i0:i1 + 1] = x[i0]; p.add("stuck", i0, i1, ["checkout_rpm"], "metrics pipeline stuck")
    i0, i1 = p.idx(9, 16.0, 90); x = variance_burst(x, i0, i1, 4.0, 7); p.add("variance_burst", i0, i1, ["checkout_rpm"], "retry storm flapping")
    i0, i1 = p.idx(11, 12.0, 20); x[i0:i1 + 1] = 0.0; p.add("drop_to_zero", i0, i1, ["checkout_rpm"], "checkout service down")
    i0, i1 = p.idx(12, 18.0, 150); x[i0:i1 + 1] *= 1.4; p.add("level_shift", i0, i1, ["checkout_rpm"], "double-submit bug")
    x = np.round(np.clip(x, 0, None), 1)
    write("checkout_rpm", ts, n_ref, {"checkout_rpm": x}, p, {"step_min": 5})


# ------------------------------------------------------ 2. queue depth
def queue_depth(rng):
    ts, n_ref, n = timeline("2026-03-09 00:00", 14, 7, 1)
    spd = 1440
    p = Plan(ts, n_ref)
    prof = profile(ts, [(10.5, 2.5, 1.0), (15.5, 2.5, 0.85)], 0.15, 0.45, 1.0)
    prof = prof / prof.max()
    t_days = np.arange(n) / spd
    rho = np.clip((0.25 + 0.52 * prof) * (1 + 0.004 * t_days) * np.exp(ar1(rng, n, 240, 0.04)), 0.05, 0.9)
    base = 35 * rho / (1 - rho)
    # nightly batch at 02:00 (weekdays 6000 jobs, weekends 2500), drains at ~120/min
    h = (ts.hour + ts.minute / 60.0).to_numpy()
    dow = ts.dayofweek.to_numpy()
    batch = np.zeros(n)
    load_jobs = np.where(dow >= 5, 2500, 6000) * np.exp(rng.normal(0, 0.08, n))
    day_index = (ts - ts[0].normalize()).days.to_numpy()
    # the planned missing nightly batch (day 3 of the test)
    skip_day = day_index[n_ref] + 3
    q = 0.0
    for i in range(n):
        if ts[i].hour == 2 and ts[i].minute == 0 and day_index[i] != skip_day:
            q += load_jobs[i]
        q = max(0.0, q - rng.normal(125, 10))
        batch[i] = q
    i0 = int(ts.searchsorted(ts[0].normalize() + pd.Timedelta(days=int(skip_day), hours=2)))
    p.add("missing_daily_peak", i0, i0 + 50, ["queue_depth"], "nightly batch did not run")
    # hourly cron: small bump at :00
    hourly = 60 * np.exp(-(ts.minute.to_numpy()) / 4.0) * (dow < 5)
    mult = np.ones(n)
    i0, i1 = p.idx(0, 11.0, 12); mult[i0:i1 + 1] *= 1.5; p.add("spike", i0, i1, ["queue_depth"], "burst of producer traffic")
    i0, i1 = p.idx(1, 9.0, 180); mult[i0:i1 + 1] *= 1.45; p.add("level_shift", i0, i1, ["queue_depth"], "one consumer pod lost")
    i0, i1 = p.idx(2, 13.0, 90)
    stall = np.zeros(n); stall[i0:i1 + 1] = np.linspace(0, 1, i1 - i0 + 1) * 3.0 * base[i0:i1 + 1]
    p.add("ramp", i0, i1, ["queue_depth"], "consumer slowly stalling (leak)")
    i0, i1 = p.idx(4, 15.0, 60); mult[i0:i1 + 1] *= 0.55; p.add("dip", i0, i1, ["queue_depth"], "producers throttled upstream")
    x = rng.poisson(np.maximum(base * mult + stall + hourly * mult + batch, 0)).astype(float)
    x *= 1 + rng.normal(0, 0.04, n)
    x *= blips(rng, n, spd, 1.0, 3, 1.25, 1.6)
    i0, i1 = p.idx(3, 16.0, 90); x[i0:i1 + 1] = x[i0]; p.add("stuck", i0, i1, ["queue_depth"], "exporter stuck")
    i0, i1 = p.idx(5, 10.0, 30); x[i0:i1 + 1] = 0; p.add("drop_to_zero", i0, i1, ["queue_depth"], "exporter reports 0")
    i0, i1 = p.idx(5, 20.0, 60); x = variance_burst(x, i0, i1, 4.0, 9); p.add("variance_burst", i0, i1, ["queue_depth"], "consumers flapping")
    i0, i1 = p.idx(6, 12.0, 150); x[i0:i1 + 1] *= ramp(i0, i1, 1.6); p.add("ramp", i0, i1, ["queue_depth"], "slow backlog build-up")
    x = np.round(np.clip(x, 0, None)).astype(int)
    write("queue_depth", ts, n_ref, {"queue_depth": x}, p, {"step_min": 1})


# ------------------------------------------------------ 3. database host
def db_host(rng):
    ts, n_ref, n = timeline("2026-01-12 00:00", 14, 7, 1)
    spd = 1440
    p = Plan(ts, n_ref)
    prof = profile(ts, [(11.0, 2.5, 1.0), (16.0, 2.0, 0.8)], 0.12, 0.5, 1.0)
    prof /= prof.max()
    t_days = np.arange(n) / spd
    load = prof * (1 + 0.003 * t_days) * np.exp(ar1(rng, n, 180, 0.06)) * blips(rng, n, spd, 1.0, 3, 1.15, 1.35)
    h = (ts.hour + ts.minute / 60.0).to_numpy()
    dow = ts.dayofweek.to_numpy()
    backup = ((h >= 2.0) & (h < 2.75)).astype(float)          # nightly backup
    # driver-level incidents
    L = load.copy(); cpu_extra = np.zeros(n); aq_mult = np.ones(n); read_mult = np.ones(n)
    i0, i1 = p.idx(0, 14.0, 20); cpu_extra[i0:i1 + 1] += 30; aq_mult[i0:i1 + 1] *= 2.0
    p.add("spike", i0, i1, ["cpu_pct", "active_queries"], "runaway query")
    i0, i1 = p.idx(1, 10.0, 180); cpu_extra[i0:i1 + 1] += 0.4 * (8 + 55 * L[i0:i1 + 1]); read_mult[i0:i1 + 1] *= 1.4
    p.add("level_shift", i0, i1, ["cpu_pct", "read_iops"], "bad query plan after deploy")
    i0, i1 = p.idx(2, 15.0, 60); read_mult[i0:i1 + 1] *= 1.5
    cache_drop = np.zeros(n); cache_drop[i0:i1 + 1] = 5.0
    p.add("dip", i0, i1, ["cache_hit_pct", "read_iops"], "cache evicted, hit ratio dips")
    cpu = 8 + 55 * L + cpu_extra + 4 * backup + rng.normal(0, 1.0 + 1.5 * L, n)
    read = rng.poisson((400 + 3000 * L) * read_mult + 1500 * backup) * (1 + rng.normal(0, 0.03, n))
    write_ = rng.poisson(150 + 900 * np.roll(L, 3)) * (1 + rng.normal(0, 0.04, n))
    conns = np.round(40 + 160 * smooth(L, 15) + rng.normal(0, 2.5, n))
    aq = rng.poisson((2 + 25 * L) * aq_mult).astype(float)
    lag = np.exp(rng.normal(np.log(0.4), 0.35, n)) * (1 + 0.8 * L) + 4.0 * backup * np.exp(rng.normal(0, 0.2, n))
    # disk: grows with writes, weekly cleanup Sunday 03:00 frees ~2.4 points
    growth = (0.55 / spd) * (write_ / 600.0)
    disk = np.empty(n); dv = 61.0
    for i in range(n):
        dv += growth[i]
        if dow[i] == 6 and ts[i].hour == 3 and ts[i].minute == 0:
            dv -= 2.4
        disk[i] = dv
    disk += rng.normal(0, 0.01, n)
    cache = 99.3 - 1.2 * L - cache_drop + rng.normal(0, 0.08, n)
    maxc = np.full(n, 500)
    # near-constant column stepping occasionally: replicas 2, sometimes 3 for a few hours
    replicas = np.full(n, 2)
    for d, hh, dur in [(2, 9, 7), (6, 13, 5), (10, 8, 10), (16, 10, 6)]:  # day 16 is in the test
        a = int(ts.searchsorted(ts[0] + pd.Timedelta(days=d, hours=hh)))
        replicas[a:a + dur * 60] = 3
    # column-level incidents
    i0, i1 = p.idx(3, 11.0, 120); cpu[i0:i1 + 1] = cpu[i0]; p.add("stuck", i0, i1, ["cpu_pct"], "node exporter stuck")
    i0, i1 = p.idx(3, 20.5, 25); write_[i0:i1 + 1] = 0; aq[i0:i1 + 1] *= 1.5; p.add("drop_to_zero", i0, i1, ["write_iops", "active_queries"], "writes blocked by lock")
    i0, i1 = p.idx(4, 12.0, 40); lag[i0:i1 + 1] = lag[i0:i1 + 1] + np.linspace(2, 7, i1 - i0 + 1)
    p.add("spike", i0, i1, ["replication_lag_s"], "replica falls behind")
    i0, i1 = p.idx(4, 22.0, 240); disk[i0:i1 + 1] += np.linspace(0, 3.0, i1 - i0 + 1)  # cleaned up afterwards
    p.add("ramp", i0, i1, ["disk_used_pct"], "runaway log growth")
    i0, i1 = p.idx(5, 9.5, 180)
    read[i0:i1 + 1] = read[i0 - 12 * 60:i1 + 1 - 12 * 60]   # 12 h old pattern: decoupled from load
    p.add("broken_correlation", i0, i1, ["read_iops"], "read_iops no longer follows load")
    i0, i1 = p.idx(6, 14.0, 60); cpu = variance_burst(cpu, i0, i1, 4.0, 9); p.add("variance_burst", i0, i1, ["cpu_pct"], "thrashing")
    i0, i1 = p.idx(6, 21.5, 150); conns[i0:i1 + 1] *= ramp(i0, i1, 1.6); p.add("ramp", i0, i1, ["connections"], "connection leak in app")
    cols = {
        "cpu_pct": np.round(np.clip(cpu, 0, 100), 2),
        "read_iops": np.round(np.clip(read, 0, None)).astype(int),
        "write_iops": np.round(np.clip(write_, 0, None)).astype(int),
        "connections": np.clip(conns, 0, 500).astype(int),
        "active_queries": np.round(aq).astype(int),
        "replication_lag_s": np.round(lag, 3),
        "disk_used_pct": np.round(np.clip(disk, 0, 100), 3),
        "cache_hit_pct": np.round(np.clip(cache, 0, 100), 3),
        "max_connections": maxc,
        "replicas": replicas,
    }
    write("db_host", ts, n_ref, cols, p, {"step_min": 1})


# --------------------------------------------------- 4. k8s service
def k8s_service(rng):
    ts, n_ref, n = timeline("2026-02-16 00:00", 14, 7, 1)
    spd = 1440
    p = Plan(ts, n_ref)
    prof = profile(ts, [(9.5, 1.8, 0.9), (14.0, 3.0, 1.0), (21.0, 1.5, 0.5)], 0.1, 0.55, 2.0)
    prof /= prof.max()
    t_days = np.arange(n) / spd
    rps_rate = (60 + 1300 * prof) * (1 + 0.004 * t_days) * np.exp(ar1(rng, n, 120, 0.06)) * blips(rng, n, spd, 1.2, 2, 1.2, 1.45)
    # driver incidents on the load
    i0, i1 = p.idx(0, 15.0, 40); rps_rate[i0:i1 + 1] *= 0.55; p.add("dip", i0, i1, ["rps"], "upstream LB drops half the traffic")
    i0s, i1s = p.idx(1, 11.0, 10); rps_rate[i0s:i1s + 1] *= 1.5
    err_extra = np.zeros(n); err_extra[i0s:i1s + 1] += 0.35
    p.add("spike", i0s, i1s, ["rps", "error_rate_pct"], "client retry storm")
    rps = rng.poisson(rps_rate * 60) / 60.0
    # HPA: target 150 rps per pod, min 3 max 14, scale-down after 10 min
    pods = np.empty(n, int); cur = 3; low_since = 0
    stuck0, stuck1 = p.idx(2, 8.0, 240)
    for i in range(n):
        want = int(np.clip(np.ceil(rps[max(0, i - 2):i + 1].mean() / 150.0), 3, 14))
        if stuck0 <= i <= stuck1:
            pass  # HPA broken: pods frozen
        elif want > cur:
            cur = want; low_since = 0
        elif want < cur:
            low_since += 1
            if low_since >= 10:
                cur -= 1; low_since = 0
        else:
            low_since = 0
        pods[i] = cur
    p.add("stuck", stuck0, stuck1, ["pods", "p99_ms", "cpu_millicores"], "HPA frozen: pods stay while load grows")
    util = rps / (pods * 150.0)
    cpu = 60 + 380 * util + rng.normal(0, 12, n)
    p50 = 18 + 7 * util + rng.normal(0, 0.6, n)
    p99 = (70 + 95 * util**3) * np.exp(rng.normal(0, 0.08, n))
    err = np.clip(rng.gamma(2, 0.01, n) + err_extra, 0, None)
    # rare small benign error bursts
    for _ in range(rng.poisson(0.6 * n / spd)):
        a = rng.integers(0, n); err[a:a + rng.integers(1, 4)] += rng.uniform(0.1, 0.25)
    # memory sawtooth per pod with GC; deploys reset it
    mem = np.empty(n); gcp = np.empty(n); m = 420.0
    deploys = set(int(ts.searchsorted(ts[0] + pd.Timedelta(days=d, hours=hh))) for d, hh in [(1, 14), (3, 11), (7, 15), (9, 10), (11, 16), (15, 13), (18, 11)])
    leak0, leak1 = p.idx(3, 10.0, 180)
    top = 720.0
    for i in range(n):
        m += 0.25 * (rps[i] / pods[i]) / 10 + rng.normal(0, 1.5)
        g = 8 + rng.gamma(2, 1.0)
        t_top = top + (220 * (i - leak0) / (leak1 - leak0) if leak0 <= i <= leak1 else 0)
        if leak0 <= i <= leak1:
            m += 0.5  # retained memory grows
            if m > t_top:
                m -= 120; g += 60
        elif m > top + rng.normal(0, 10):
            m = 410 + rng.normal(0, 8) + (0 if i < leak0 or i > leak1 + 120 else 0)
            g += 35 + rng.gamma(3, 5)
        if i in deploys:
            m = 380.0
        mem[i] = m; gcp[i] = g
    p.add("ramp", leak0, leak1, ["mem_mb", "gc_pause_ms"], "memory leak: sawtooth creeps up")
    inflight = rng.poisson(rps * (p50 * 1.6) / 1000.0).astype(float)
    cpu_limit = np.full(n, 1000)
    # column-level incidents
    i0, i1 = p.idx(2, 20.0, 180); creep = ramp(i0, i1, 1.6); p99[i0:i1 + 1] *= creep; p50[i0:i1 + 1] *= 1 + (creep - 1) / 2
    p.add("latency_creep", i0, i1, ["p99_ms", "p50_ms"], "slow dependency degrading")
    i0, i1 = p.idx(4, 10.5, 15); err[i0:i1 + 1] += rng.uniform(1.5, 3.0, i1 - i0 + 1); p.add("error_burst", i0, i1, ["error_rate_pct"], "bad config pushed")
    i0, i1 = p.idx(4, 19.0, 20); rps[i0:i1 + 1] = 0; p.add("drop_to_zero", i0, i1, ["rps"], "scrape target lost for rps metric")
    i0, i1 = p.idx(5, 9.0, 120)
    inflight[i0:i1 + 1] = np.round(inflight[i0] * 1.1 + rng.normal(0, 2, i1 - i0 + 1) + np.linspace(0, 15, i1 - i0 + 1))
    p.add("broken_correlation", i0, i1, ["inflight"], "inflight stops following rps (stuck connections)")
    i0, i1 = p.idx(5, 17.5, 60); p99 = variance_burst(p99, i0, i1, 3.5, 9); p.add("variance_burst", i0, i1, ["p99_ms"], "noisy neighbour")
    i0, i1 = p.idx(6, 8.0, 120); gcp[i0:i1 + 1] *= 1.6; p.add("level_shift", i0, i1, ["gc_pause_ms"], "new JVM flags")
    i0, i1 = p.idx(6, 16.5, 20); cpu[i0:i1 + 1] *= 1.5; p.add("spike", i0, i1, ["cpu_millicores"], "hot loop in one code path")
    cols = {
        "rps": np.round(rps, 2),
        "pods": pods,
        "cpu_millicores": np.round(np.clip(cpu, 0, 1000)).astype(int),
        "cpu_limit_millicores": cpu_limit,
        "p50_ms": np.round(p50, 2),
        "p99_ms": np.round(p99, 1),
        "error_rate_pct": np.round(np.clip(err, 0, 100), 3),
        "mem_mb": np.round(mem, 1),
        "gc_pause_ms": np.round(gcp, 1),
        "inflight": np.clip(inflight, 0, None).astype(int),
    }
    write("k8s_service", ts, n_ref, cols, p, {"step_min": 1})


# --------------------------------------------------- 5. web fleet behind an LB
def web_fleet(rng):
    ts, n_ref, n = timeline("2026-01-05 00:00", 21, 14, 5)
    spd = 288
    p = Plan(ts, n_ref)
    peaks = [(10.0, 2.0, 0.8), (14.5, 2.5, 1.0), (20.0, 1.8, 0.7)]
    drop, d0, d1 = p.peak_drop(9, 2, 20.0, 1.8)          # a Wednesday: evening peak missing
    prof = profile(ts, peaks, 0.15, 0.7, 1.5, drop=drop)
    prof /= profile(ts, peaks, 0.15, 0.7, 1.5).max()
    t_days = np.arange(n) / spd
    total_rate = (300 + 4200 * prof) * (1 + 0.003 * t_days) * np.exp(ar1(rng, n, 36, 0.05)) * blips(rng, n, spd, 0.7, 1, 1.15, 1.35)
    p.add("missing_daily_peak", d0, d1, [f"b{k}_rps" for k in range(1, 7)] + ["lb_total_rps"], "evening campaign traffic never arrived")
    i0, i1 = p.idx(0, 11.0, 20); total_rate[i0:i1 + 1] *= 1.5; p.add("spike", i0, i1, ["lb_total_rps"], "traffic surge")
    i0, i1 = p.idx(2, 13.0, 60); total_rate[i0:i1 + 1] *= 0.6; p.add("dip", i0, i1, ["lb_total_rps"], "CDN misroute")
    w = np.array([0.18, 0.17, 0.16, 0.17, 0.16, 0.16])
    W = np.tile(w, (n, 1))
    i0z, i1z = p.idx(4, 15.0, 40); W[i0z:i1z + 1, 2] = 0
    p.add("drop_to_zero", i0z, i1z, ["b3_rps", "b3_cpu_pct"], "backend 3 removed from pool")
    W = W / W.sum(1, keepdims=True)
    cols = {}
    lb_total = rng.poisson(total_rate * 60 / 60).astype(float)
    cpu_extra = np.zeros((n, 6)); lat_mult = np.ones((n, 6))
    i0, i1 = p.idx(1, 9.0, 180); cpu_extra[i0:i1 + 1, 0] = 25; p.add("level_shift", i0, i1, ["b1_cpu_pct", "b1_p95_ms"], "noisy neighbour on b1's host")
    i0, i1 = p.idx(5, 10.0, 240); lat_mult[i0:i1 + 1, 1] = ramp(i0, i1, 1.6); p.add("latency_creep", i0, i1, ["b2_p95_ms"], "b2 disk degrading")
    i0, i1 = p.idx(8, 8.0, 300); cpu_extra[i0:i1 + 1, 1] = np.linspace(0, 30, i1 - i0 + 1); p.add("ramp", i0, i1, ["b2_cpu_pct"], "b2 memory leak -> swapping")
    for k in range(6):
        r = rng.poisson(lb_total * W[:, k]).astype(float)
        cpu = 6 + 60 * r / 900.0 + cpu_extra[:, k] + rng.normal(0, 1.2, n)
        if k == 2:
            cpu[i0z:i1z + 1] = 2.5 + rng.normal(0, 0.3, i1z - i0z + 1)
        cpu = np.clip(cpu, 0, 100)
        p95 = (45 + 40 * (cpu / 100) ** 3) * lat_mult[:, k] * np.exp(rng.normal(0, 0.07, n))
        cols[f"b{k+1}_rps"] = r; cols[f"b{k+1}_cpu_pct"] = cpu; cols[f"b{k+1}_p95_ms"] = p95
    lb5 = rng.poisson(0.8 + 0.0015 * lb_total).astype(float)
    # column-level incidents
    i0, i1 = p.idx(6, 14.0, 120)
    for c in ("b5_rps", "b5_cpu_pct", "b5_p95_ms"):
        cols[c][i0:i1 + 1] = cols[c][i0]
    p.add("stuck", i0, i1, ["b5_rps", "b5_cpu_pct", "b5_p95_ms"], "b5's agent stopped reporting (last value repeated)")
    i0, i1 = p.idx(7, 16.0, 15); lb5[i0:i1 + 1] += rng.poisson(10, i1 - i0 + 1); p.add("error_burst", i0, i1, ["lb_5xx_per_min"], "bad deploy, rolled back")
    i0, i1 = p.idx(10, 10.0, 180)
    cols["b4_rps"][i0:i1 + 1] = cols["b4_rps"][i0 - 288 // 2:i1 + 1 - 288 // 2]  # 12h-old pattern
    p.add("broken_correlation", i0, i1, ["b4_rps"], "b4 rps decoupled from its cpu and the LB total")
    i0, i1 = p.idx(11, 15.0, 60); cols["b6_cpu_pct"] = variance_burst(cols["b6_cpu_pct"], i0, i1, 4.0, 5); p.add("variance_burst", i0, i1, ["b6_cpu_pct"], "b6 cpu flapping")
    out = {}
    for k in range(6):
        out[f"b{k+1}_rps"] = np.clip(cols[f"b{k+1}_rps"], 0, None).astype(int)
        out[f"b{k+1}_cpu_pct"] = np.round(np.clip(cols[f"b{k+1}_cpu_pct"], 0, 100), 2)
        out[f"b{k+1}_p95_ms"] = np.round(cols[f"b{k+1}_p95_ms"], 1)
    out["lb_total_rps"] = lb_total.astype(int)
    out["lb_5xx_per_min"] = lb5.astype(int)
    write("web_fleet", ts, n_ref, out, p, {"step_min": 5})


# ---------------------------------------------------- 6. kafka broker
def kafka_broker(rng):
    ts, n_ref, n = timeline("2026-02-02 00:00", 21, 14, 5)
    spd = 288
    p = Plan(ts, n_ref)
    prof = profile(ts, [(11.0, 3.0, 1.0), (19.0, 2.5, 0.7)], 0.25, 0.6, 1.0)
    prof /= prof.max()
    t_days = np.arange(n) / spd
    msgs = (2000 + 18000 * prof) * (1 + 0.004 * t_days) * np.exp(ar1(rng, n, 24, 0.05)) * blips(rng, n, spd, 0.8, 1, 1.15, 1.4)
    size = 1.2 * np.exp(ar1(rng, n, 288, 0.03))      # KB per message, slow wander
    mult = np.ones(n)
    i0, i1 = p.idx(0, 14.0, 15); mult[i0:i1 + 1] *= 1.5; p.add("spike", i0, i1, ["messages_in_per_s", "bytes_in_kb_per_s"], "producer replay")
    i0, i1 = p.idx(1, 9.5, 180); size[i0:i1 + 1] *= 1.5; p.add("broken_correlation", i0, i1, ["bytes_in_kb_per_s"], "message size grows (producer bug): bytes decouple from messages")
    msgs = msgs * mult * (1 + rng.normal(0, 0.03, n))
    bytes_in = msgs * size * (1 + rng.normal(0, 0.02, n))
    fanout = np.full(n, 2.5)
    out_zero0, out_zero1 = p.idx(3, 15.0, 30); fanout[out_zero0:out_zero1 + 1] = 0
    p.add("drop_to_zero", out_zero0, out_zero1, ["bytes_out_kb_per_s", "consumer_lag"], "consumers disconnected")
    bytes_out = bytes_in * fanout * (1 + rng.normal(0, 0.03, n))
    # consumer lag: normal small, nightly batch consumer lags at 01:00
    h = (ts.hour + ts.minute / 60.0).to_numpy()
    lag = 500 + 0.05 * msgs * np.exp(rng.normal(0, 0.3, n)) + 30000 * bump(h, 1.25, 0.3) * np.exp(rng.normal(0, 0.1, n))
    lag[out_zero0:out_zero1 + 1] += np.cumsum(msgs[out_zero0:out_zero1 + 1] * 300 * 0.002)
    i0, i1 = p.idx(5, 13.0, 120); lag[i0:i1 + 1] += np.linspace(0, 1, i1 - i0 + 1) * 40000
    p.add("ramp", i0, i1, ["consumer_lag"], "consumer group stalling")
    idle = 100 - 55 * msgs / 20000 + rng.normal(0, 1.5, n)
    # disk: hourly segment deletion keeps it oscillating; slow creep
    disk = 52 + 6 * smooth(bytes_in / 24000, 24) + 0.05 * t_days + 0.4 * ((ts.minute.to_numpy() + 60 * (ts.hour.to_numpy() % 1)) / 60) + rng.normal(0, 0.05, n)
    i0, i1 = p.idx(6, 20.0, 360); disk[i0:i1 + 1] += np.linspace(0, 6, i1 - i0 + 1)
    p.add("ramp", i0, i1, ["disk_used_pct"], "retention not deleting segments")
    heap = np.empty(n); hv = 35.0
    for i in range(n):
        hv += 0.6 + 2.0 * msgs[i] / 20000 + rng.normal(0, 0.5)
        if hv > 75 + rng.normal(0, 2):
            hv = 32 + rng.normal(0, 2)
        heap[i] = hv
    urp = rng.poisson(0.02, n).astype(float)
    isr = rng.poisson(0.05, n).astype(float)
    partitions = np.full(n, 1200)
    leaders = np.full(n, 400)
    for d, hh, v in [(4, 10, 390), (4, 10.6, 400), (12, 3, 412), (12, 4, 400), (18, 15, 395), (18, 15.5, 400), (27, 9, 408), (27, 9.4, 400)]:
        a = int(ts.searchsorted(ts[0] + pd.Timedelta(days=d, hours=hh)))
        leaders[a:] = v
    # column-level incidents
    i0, i1 = p.idx(2, 11.0, 30); urp[i0:i1 + 1] += rng.poisson(25, i1 - i0 + 1); isr[i0:i1 + 1] += rng.poisson(4, i1 - i0 + 1)
    p.add("error_burst", i0, i1, ["under_replicated_partitions", "isr_shrinks_per_min"], "broker lost its follower briefly")
    i0, i1 = p.idx(4, 10.0, 60); idle[i0:i1 + 1] *= 0.6; p.add("dip", i0, i1, ["request_handler_idle_pct"], "request handlers saturated")
    i0, i1 = p.idx(7, 8.0, 90); heap[i0:i1 + 1] = 88 + rng.normal(0, 1.5, i1 - i0 + 1); p.add("level_shift", i0, i1, ["jvm_heap_pct"], "GC thrash, heap stays full")
    i0, i1 = p.idx(8, 16.0, 120); msgs[i0:i1 + 1] = msgs[i0]; p.add("stuck", i0, i1, ["messages_in_per_s"], "metric exporter stuck")
    i0, i1 = p.idx(10, 12.0, 60); bytes_in = variance_burst(bytes_in, i0, i1, 4.0, 5); p.add("variance_burst", i0, i1, ["bytes_in_kb_per_s"], "producer batching flapping")
    i0, i1 = p.idx(12, 3.0, 60); msgs[i0:i1 + 1] *= 1.6; bytes_in[i0:i1 + 1] *= 1.6; bytes_out[i0:i1 + 1] *= 1.6
    p.add("level_shift", i0, i1, ["messages_in_per_s", "bytes_in_kb_per_s", "bytes_out_kb_per_s"], "night backfill job")
    cols = {
        "messages_in_per_s": np.round(msgs, 1),
        "bytes_in_kb_per_s": np.round(bytes_in, 1),
        "bytes_out_kb_per_s": np.round(bytes_out, 1),
        "consumer_lag": np.round(lag).astype(int),
        "under_replicated_partitions": urp.astype(int),
        "isr_shrinks_per_min": isr.astype(int),
        "request_handler_idle_pct": np.round(np.clip(idle, 0, 100), 2),
        "disk_used_pct": np.round(np.clip(disk, 0, 100), 3),
        "jvm_heap_pct": np.round(np.clip(heap, 0, 100), 2),
        "partitions": partitions,
        "leader_count": leaders,
    }
    write("kafka_broker", ts, n_ref, cols, p, {"step_min": 5})


if __name__ == "__main__":
    for i, fn in enumerate([checkout_rpm, queue_depth, db_host, k8s_service, web_fleet, kafka_broker]):
        fn(np.random.default_rng(SEED + i))
