"""Does a rerun reproduce the committed numbers? Compare two reproduce.json files row by row.

Every variant of every row both files hold is compared: accuracy within ``--accuracy-points``
(default 0.3) and energy within ``--energy-share`` (default 1 %). Prints a markdown table
(``-o`` writes it) and exits 1 when anything is outside the tolerance.

    python benchmarks/compare_runs.py committed.json rerun.json -o benchmarks/results/rerun_check.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runs import write_atomic

#: Slack on the tolerances: 89.96 -> 90.26 is 0.30 points, though its float difference is 0.30000000000001137.
SLACK = 1e-9


def compare(a: dict[str, Any], b: dict[str, Any], points: float, share: float,
            only: set[tuple[str, str]] | None = None) -> tuple[list[str], bool]:
    """The comparison table and whether B reproduces A: every variant of every row compared (a row
    named in ``only``, or a variant, that B lacks is not reproduced)."""
    rows_a = {(r["network"], r["dataset"]): r for r in a["rows"]}
    rows_b = {(r["network"], r["dataset"]): r for r in b["rows"]}
    keys = rows_a.keys() & rows_b.keys()
    if only:
        unknown = sorted(only - rows_a.keys())
        if unknown:
            raise ValueError(f"--only {', '.join('/'.join(k) for k in unknown)}: no such row in A")
        keys = only
    lines = ["| network | data set | variant | accuracy A → B (Δ pts) | energy A → B (Δ) | within |",
             "|---|---|---|---|---|---|"]
    ok = True
    for key in sorted(keys):
        if key not in rows_b:
            lines.append(f"| {key[0]} | {key[1]} | (the whole row) | missing in B | | **no** |")
            ok = False
            continue
        va, vb = rows_a[key]["variants"], rows_b[key]["variants"]
        for name in va:
            if name not in vb:
                lines.append(f"| {key[0]} | {key[1]} | {name} | missing in B | | **no** |")
                ok = False
                continue
            da, db = va[name], vb[name]
            d_acc = db["accuracy"] - da["accuracy"]
            d_e = db["energy"] / da["energy"] - 1
            within = abs(d_acc) <= points + SLACK and abs(d_e) <= share + SLACK
            ok &= within
            lines.append(f"| {key[0]} | {key[1]} | {name} | {da['accuracy']:.2f} → {db['accuracy']:.2f} "
                         f"({d_acc:+.2f}) | {da['energy']:.6g} → {db['energy']:.6g} ({d_e:+.3%}) | "
                         f"{'yes' if within else '**no**'} |")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="the committed reproduce.json")
    parser.add_argument("b", type=Path, help="the rerun's reproduce.json")
    parser.add_argument("--accuracy-points", type=float, default=0.3)
    parser.add_argument("--energy-share", type=float, default=0.01)
    parser.add_argument("--only", nargs="+", metavar="NETWORK/DATASET",
                        help="compare only these rows (the ones the rerun recomputed; a results file also "
                        "carries rows merged from earlier runs)")
    parser.add_argument("--note", default="", help="a line saying where A and B come from")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    try:
        a, b = (json.loads(p.read_text()) for p in (args.a, args.b))
    except (OSError, ValueError) as exc:
        print(f"compare_runs: {exc}", file=sys.stderr)
        return 2
    only = {tuple(o.split("/", 1)) for o in args.only} if args.only else None
    try:
        lines, ok = compare(a, b, args.accuracy_points, args.energy_share, only)
    except ValueError as exc:
        print(f"compare_runs: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError, ZeroDivisionError) as exc:
        print(f"compare_runs: not two reproduce.json files of rows with variants ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 2
    if len(lines) == 2:
        print("compare_runs: the two files share no (network, data set) row", file=sys.stderr)
        return 2
    text = "\n".join([
        "# Rerun check", "",
        f"A: `{args.a}` ({a.get('command', '?')}); B: `{args.b}` ({b.get('command', '?')}).",
        *([args.note] if args.note else []),
        f"Tolerance: accuracy within {args.accuracy_points:g} points, energy within {100 * args.energy_share:g}%.",
        f"Verdict: **{'reproduced' if ok else 'NOT reproduced'}**.", "", *lines, ""])
    if args.output:
        write_atomic(args.output, text)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
