"""Run the whole benchmark suite and write a summary.

    python -m benchmarks --quick          # under 10 minutes on 2 cores
    python -m benchmarks --full           # the paper's settings: many hours on 2 cores
    python benchmarks/run.py --quick      # the same, as a script

Experiments (each also runs alone, e.g. ``python benchmarks/phase.py --quick``):
phase (Figure 1), vector (Figure 2, 10 outputs), tabular, inr (Figures 4-5),
scaling.  Results: benchmarks/results/<experiment>_<mode>.{md,json,png} and
summary_<mode>.md.  ``--only phase,inr`` runs a subset; ``--phase-n N`` sets
the training size of the full phase diagrams (default 50000, as in the
paper); ``--resume`` keeps the finished cells of an interrupted phase run.
"""

import argparse
import os
import sys
import time

if __package__:
    from . import _common, inr, phase, scaling, tabular
else:  # python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common
    import inr
    import phase
    import scaling
    import tabular

EXPERIMENTS = ("phase", "vector", "tabular", "inr", "scaling")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small grids (default)")
    mode.add_argument("--full", action="store_true", help="the paper's grids and sizes")
    ap.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated subset of " + ", ".join(EXPERIMENTS))
    ap.add_argument("--phase-n", type=int, default=None, help="training points of the full phase diagrams")
    ap.add_argument("--phase-seeds", default=None, help="comma-separated seeds of the full phase diagrams (0,1,2)")
    ap.add_argument("--resume", action="store_true", help="keep finished cells of an interrupted phase run")
    args = ap.parse_args(argv)
    quick = not args.full
    todo = [e for e in args.only.split(",") if e]
    unknown = set(todo) - set(EXPERIMENTS)
    if unknown:
        ap.error(f"unknown experiment(s) {sorted(unknown)}; choose from {EXPERIMENTS}")
    m = "quick" if quick else "full"
    start = time.perf_counter()
    print(f"sklearn-sparse-mlp benchmarks, {m} mode: {', '.join(todo)}\n{_common.machine()}", flush=True)
    print("warming up (numba compilation)...", flush=True)
    _common.warm_up()

    def progress(msg):
        print(msg, flush=True)

    summary = {}
    for i, name in enumerate(todo, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(todo)}] {name} ...", flush=True)
        if name in ("phase", "vector"):
            seeds = None if quick or args.phase_seeds is None else [int(x) for x in args.phase_seeds.split(",")]
            out = phase.run(m, 1 if name == "phase" else 10, None if quick else args.phase_n, args.resume, progress,
                            seeds)
            summary[name] = (f"IHT >= IMP - 1 dB on {out['iht_near_imp']}/{out['cells']} cells; IHT >= 40 dB on "
                             f"{out['iht_40']} cells (IMP {out['imp_40']}); s <= {phase.RECOVERY_BAND}: "
                             f"{out['band_recovered']}/{out['band_cells']} recovered")
        elif name == "tabular":
            rows = tabular.run(quick, progress)
            parts = []
            for ds in tabular.DATASETS:
                sc = {r["model"]: r["score"] for r in rows if r["dataset"] == ds}
                parts.append(f"{ds} IHT {sc['IHT']:.3f} / IMP {sc['IMP']:.3f} / MLP {sc['MLP (dense)']:.3f}")
            summary[name] = "; ".join(parts)
        elif name == "inr":
            rows = inr.run(quick, progress)
            summary[name] = "; ".join(f"{r['method']} s={r['budget']} {r['psnr']:.1f} dB" for r in rows)
        else:
            res = scaling.run(quick, progress)
            by = {(r["kind"], r["p"]): r["peak_mib"] - r["base_mib"] for r in res["memory"]}
            ws = sorted({r["p"] for r in res["memory"]})
            summary[name] = (f"iteration ~ n^{res['slope_n']:.2f}, p^{res['slope_p']:.2f}; peak RSS growth at "
                             f"p={ws[0]}..{ws[-1]}: IHT {by['IHT', ws[0]]:.1f}..{by['IHT', ws[-1]]:.1f} MiB, "
                             f"IMP {by['IMP', ws[0]]:.1f}..{by['IMP', ws[-1]]:.1f} MiB")
        print(f"[{i}/{len(todo)}] {name} done in {time.perf_counter() - t0:.0f} s: {summary[name]}", flush=True)
    total = time.perf_counter() - start
    cmd = f"python -m benchmarks --{m}" + (f" --only {args.only}" if set(todo) != set(EXPERIMENTS) else "")
    lines = _common.header("Benchmark summary", cmd, m)
    lines += [f"Total: {total / 60:.1f} minutes.", "", "| experiment | headline | details |", "|---|---|---|"]
    for name, text in summary.items():
        fname = f"{name}_{m}"
        lines.append(f"| {name} | {text} | [{fname}.md]({fname}.md) |")
    _common.write_results(f"summary_{m}" if set(todo) == set(EXPERIMENTS) else f"summary_{m}_partial", lines,
                          dict(summary=summary, seconds=total))
    print(f"all done in {total / 60:.1f} min; results in {_common.RESULTS}", flush=True)


if __name__ == "__main__":
    main()
