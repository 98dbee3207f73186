"""Peak memory of a two-hidden-layer fit against the widths, IHT and IMP.

One fit per process (``_common.peak_rss``: imports and a warm-up fit first,
then the RSS high-water mark is reset), on a planted data set (n=2000,
d=100), at a fixed budget of 200 nonzero weights, for hidden layers of
width (m, m).  IHT trains layer by layer: each stage is a one-layer fit whose
memory does not grow with its width, and the second stage reads only the
first stage's active units.  IMP trains the dense (m, m) network first.

    python benchmarks/deep_memory.py --quick    # m = 100, 1000, 10000 (IMP to 1000)
    python benchmarks/deep_memory.py            # IMP to 3000 as well
"""

import argparse

if __package__:
    from ._common import header, peak_rss, write_results
else:
    from _common import header, peak_rss, write_results

IHT = "SparseMLPRegressor(200, hidden_layer_sizes=({width}, {width}), max_iter=5, random_state=0)"
IMP = "IMPRegressor(200, hidden_layer_sizes=({width}, {width}), epochs_per_round=1, random_state=0)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    widths = (100, 1000, 10000)
    imp_widths = (100, 1000) if args.quick else (100, 1000, 3000)
    rows = []
    for kind, make, ws in (("IHT", IHT, widths), ("IMP", IMP, imp_widths)):
        for m in ws:
            r = peak_rss(make, m)
            growth = r["peak_mib"] - r["base_mib"]
            rows.append(dict(kind=kind, width=m, growth_mib=growth, fit_s=r["fit_s"], n_nonzero=r["n_nonzero"],
                             dense_mib=(100 * m + m * m + m) * 8 / 2**20))
            print(f"{kind} m={m:<6} peak RSS growth {growth:7.1f} MiB  fit {r['fit_s']:6.1f} s  "
                  f"nonzeros {r['n_nonzero']}", flush=True)
    command = "python benchmarks/deep_memory.py" + (" --quick" if args.quick else "")
    lines = header("Peak memory of a two-hidden-layer fit against the widths", command, mode)
    lines += ["Planted data (n=2000, d=100), budget 200, hidden layers (m, m). IHT: "
              f"`{IHT.format(width='m')}`; IMP: `{IMP.format(width='m')}`. Growth of the peak RSS during "
              "the fit over the RSS after a warm-up fit, one process per fit.", "",
              "| method | m | dense weights (MiB) | peak RSS growth (MiB) | fit (s) | nonzeros |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['width']} | {r['dense_mib']:.1f} | {r['growth_mib']:.1f} | "
                     f"{r['fit_s']:.1f} | {r['n_nonzero']} |")
    iht = [r["growth_mib"] for r in rows if r["kind"] == "IHT"]
    lines += ["", f"IHT growth from m={widths[0]} to m={widths[-1]} (100x): {iht[-1] - iht[0]:+.1f} MiB."]
    print("wrote", write_results(f"deep_memory_{mode}", lines, rows))


if __name__ == "__main__":
    main()
