"""Pilot of the gradient-mismatch chapter on held-out seeds (disjoint from every verdict seed).

1. Surrogate tuning (:func:`run_tuning_seed`) on ``TUNING_SEEDS`` (500-505): the shape value of each
   binary surrogate family with the highest mean M(binary, s) at the verdict eps;
2. Part A (:func:`run_seed_a`) with the tuned shapes on the same held-out seeds: the per-seed sd of D;
3. Part B (:func:`run_seed_b`) on seeds 510-519: the per-seed sd of the gain (points).

The numbers it prints are the literals of ``TUNING``, ``PREREGISTRATION`` and ``PREREGISTRATION_B``
in :mod:`flatminima.claims.gradient_mismatch`. Run (about 5 CPU-minutes at the cpu preset)::

    PYTHONPATH=src nice -n 10 python benchmarks/pilot_gradient_mismatch.py --out pilot.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from flatminima.claims import gradient_mismatch as gm

PILOT_SEEDS_B = tuple(range(510, 520))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--parts", default="tune,a,b")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    p = gm.Params.from_preset(args.preset)
    out: dict = {"preset": args.preset}
    parts = args.parts.split(",")
    if "b" in parts:
        recs = []
        for s in PILOT_SEEDS_B:
            t = time.process_time()
            r = gm.run_seed_b(p, s, dev)
            r["cpu_s"] = time.process_time() - t
            recs.append(r)
            print(f"B seed {s}: gain {r['gain']:+.2f} pt, train loss {r['train_loss_baseline']:.3f} -> "
                  f"{r['train_loss_binaryduo']:.3f}, cpu {r['cpu_s']:.1f} s", flush=True)
        g = np.array([r["gain"] for r in recs])
        out["part_b"] = {"seeds": list(PILOT_SEEDS_B), "gain_mean": float(g.mean()), "gain_sd": float(g.std(ddof=1)),
                         "records": recs}
        print("Part B gain mean", g.mean(), "sd", g.std(ddof=1), flush=True)
    if "tune" in parts:
        recs = [gm.run_tuning_seed(p, s, dev) for s in gm.TUNING_SEEDS]
        table = gm.tuning_table(recs)
        best = table.groupby("family").head(1)
        print(table.to_string(), flush=True)
        out["tuning"] = {"seeds": list(gm.TUNING_SEEDS), "table": table.to_dict("records"),
                         "best": best.to_dict("records")}
        shapes = {r["family"]: r["value"] for r in best.to_dict("records")}
        p = gm.Params.from_preset(args.preset, steep_slope=shapes["steep"], approxsign_width=shapes["approxsign"],
                                  swish_beta=shapes["swishsign"])
    if "a" in parts:
        recs = []
        for s in gm.TUNING_SEEDS:
            t = time.process_time()
            recs.append(gm.run_seed_a(p, s, dev))
            print(f"A seed {s}: cpu {time.process_time() - t:.1f} s", flush=True)
        df = gm.mismatch_table(recs, p)
        by = gm.d_by_eps(df, p)
        print(by.to_string(), flush=True)
        D = gm.mismatch_gains(df, p.surrogates, p.eps)["difference"].to_numpy()
        out["part_a"] = {"seeds": list(gm.TUNING_SEEDS), "shapes": [p.steep_slope, p.approxsign_width, p.swish_beta],
                         "D_mean": float(D.mean()), "D_sd": float(D.std(ddof=1)), "D_by_eps": by.to_dict("records")}
        print("Part A D mean", D.mean(), "sd", D.std(ddof=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
