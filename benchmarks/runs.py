"""What the long, resumable benchmark runs (reproduce.py, bench_levels.py) share: their
common options and the atomic result writes that let a run stop anywhere."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Learning rates of the baselines trained here (SGD, cosine). VGG-16 without residual
#: connections does not leave its initial plateau at 0.1 in one epoch (train accuracy 12 %);
#: at 0.02 it does.
BASELINE_LR = {"vgg16_bn": 0.02, "vgg11_bn": 0.02}
DEFAULT_BASELINE_LR = 0.1


def baseline_lr(network: str, override: float | None) -> float:
    """The learning rate a baseline of ``network`` trains with (``--baseline-lr`` wins)."""
    return override if override is not None else BASELINE_LR.get(network, DEFAULT_BASELINE_LR)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed, --threads, --baseline-lr, --work, --results, --redo, --quiet."""
    from prunec.cli.common import seed

    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="CPU threads; results are reproducible for the same seed and thread count")
    parser.add_argument("--baseline-lr", type=float,
                        help="learning rate of baselines trained here (default: 0.1; 0.02 for VGG)")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work"),
                        help="where checkpoints and finished rows are cached (resumed from)")
    # resolved: a relative benchmarks/results is the committed folder too (its guards compare paths)
    parser.add_argument("--results", type=lambda text: Path(text).resolve(), default=ROOT / "benchmarks" / "results",
                        help="where the result files go (rows already there are kept unless recomputed)")
    parser.add_argument("--redo", action="store_true", help="recompute rows already finished (fine-tunes included)")
    parser.add_argument("--quiet", action="store_true")


def positive_int(text: str) -> int:
    """argparse type: a positive integer (a thread or repeat count)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def budget_points(text: str) -> float:
    """argparse type: an accuracy budget, a finite number of points >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # NaN fails
        raise argparse.ArgumentTypeError(f"must be a finite number of points >= 0, got {text!r}")
    return value


def dynamic_costs(report: dict[str, Any], with_selector: bool) -> dict[str, float]:
    """Per-inference costs of a compiled dynamic model, from its report, for
    :func:`prunec.calibration.sweep`: without the selector's energy for a zero-parameter one."""
    roles = report["energy"]["by_role"]
    base = roles["trunk"] + roles["head"] + (roles["selector"] if with_selector else 0.0)
    return {"base": base, "mild": roles["mild"], "original": report["energy"]["original"]}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def previous_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows an earlier run (another session, or a run beside this one) left in ``path``, by
    (network, data set): they are kept unless this run recomputes them."""
    if not path.exists():
        return {}
    return {(r["network"], r["dataset"]): r for r in json.loads(path.read_text()).get("rows", [])}


def study_rows(dirs: list[Path], out: Path, make_row: Callable[[Path], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per compiled-model directory, merged with the rows ``out`` already holds (by
    compiled model), each stamped with the command that made it (an older row without one with
    the command that wrote ``out``). Raises UserError before any work if a directory holds no report.json."""
    from prunec.errors import UserError

    missing = [str(d) for d in dirs if not (d / "report.json").is_file()]
    if missing:
        raise UserError(f"not a compiled-model directory (no report.json): {', '.join(missing)}")
    old = json.loads(out.read_text()) if out.exists() else {"rows": []}
    # a row made before rows named their command: its settings hold it, else the file's command made it
    rows = {r["compiled"]: {"command": (r.get("settings") or {}).get("command") or old.get("command"), **r}
            for r in old["rows"]}
    for d in dirs:
        row = {**make_row(d.resolve()), "command": "python " + shlex.join(sys.argv)}
        rows[row["compiled"]] = row
        print(f"finished {row['compiled']}", flush=True)
    return list(rows.values())


def differences(made: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """"name made (asked wanted)" for each setting in ``asked`` that ``made`` does not match;
    numbers compare as numbers (a row's 6.0 epochs is the 6 asked for). A finished row is
    reused only when this is empty: a cached row must answer the question asked."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, int | float) and isinstance(b, int | float):
            return abs(a - b) < 1e-9
        return a == b

    return [f"{name} {made.get(name)} (asked {want})" for name, want in asked.items() if not same(made.get(name), want)]



def run_study(name: str, dirs: list[Path], results: Path, make_row: Callable[[Path], dict[str, Any]],
              render: Callable[[dict[str, Any]], str], **payload: Any) -> int:
    """The whole of a study script over compiled models: its rows (merged with ``results/NAME.json``),
    then NAME.json and NAME.md written atomically. A user error is one line and exit code 2."""
    from prunec.errors import UserError

    out = results / f"{name}.json"
    try:
        rows = study_rows(dirs, out, make_row)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    payload = {"rows": rows, "command": "python " + shlex.join(sys.argv), **payload}
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(payload, indent=1) + "\n")
    write_atomic(results / f"{name}.md", render(payload))
    return 0


def compiled_original(directory: Path) -> tuple[Any, dict[str, Any]]:
    """The network the compile output ``directory`` was compiled from, as its architecture with the
    original's weights, and the checkpoint metadata to compile it with (its source, data set and input
    normalization as the report names them): a compiled directory stands in for its lost baseline.

    The architecture itself, not the traced copy: ``--reuse-levels`` checks the levels by pruning it again."""
    import prunec
    from prunec.frontend import build_architecture

    made = json.loads((directory / "report.json").read_text())
    model = made["model"]
    original = build_architecture(model["arch"], model["input_shape"][1], model["num_classes"])
    original.load_state_dict(prunec.load_compiled(directory / "model").model.original.state_dict())
    meta = {"source": model["source"], "arch": model["arch"], "dataset": made["data"]["name"],
            "arch_kwargs": {"in_channels": model["input_shape"][1], "num_classes": model["num_classes"]},
            **({"preprocess": made["data"]["normalization"]} if made["data"].get("normalization") else {})}
    return original.eval(), meta


def learned_compiled(compiled_dir: Path, why: str) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(report.json, dynamic model, input normalization) of a compiled model whose selector is learned.

    ``why`` finishes the error for another selector: what the study does with a learned one."""
    from prunec import load_compiled
    from prunec.errors import UserError
    from prunec.report import input_normalization

    report = json.loads((compiled_dir / "report.json").read_text())
    if report["selector"]["kind"] != "learned":
        raise UserError(f"{compiled_dir} was compiled with --selector {report['selector']['kind']}; this study "
                        f"{why}, so compile with the default")
    model = load_compiled(compiled_dir / report["files"]["model_dir"]).model
    return report, model, input_normalization(report)


def torch_study_main(name: str, args: argparse.Namespace, make_row: Callable[[Path], dict[str, Any]],
                     render: Callable[[dict[str, Any]], str]) -> int:
    """A study over ``args.compiled`` on ``args.threads`` torch threads, its Markdown printed when it succeeds."""
    import torch

    from prunec import __version__

    torch.set_num_threads(args.threads)
    code = run_study(name, args.compiled, args.results, make_row, render,
                     versions={"prunec": __version__, "torch": torch.__version__})
    if code == 0:
        print((args.results / f"{name}.md").read_text())
    return code


def study_heading(row: dict[str, Any]) -> str:
    """A study row's Markdown heading: the network, the data set and the compiled model it read."""
    heading = f"## {row['network']} on {row['dataset']} (`{row['compiled']}`)"
    return heading + (f"\n\nMade by `{row['command']}`." if row.get("command") else "")


def study_header(title: str, payload: dict[str, Any], about: str) -> list[str]:
    """A study's Markdown opening: its title, the command and versions that last wrote it, what it measures."""
    versions = ", ".join(f"{name} {version}" for name, version in payload["versions"].items())
    made_by = {r.get("command") for r in payload["rows"]} - {None}
    command = (f"Command: `{payload['command']}`  " if made_by <= {payload["command"]} else
               f"Last command: `{payload['command']}` (each model's section names the command that made it)  ")
    return [f"# {title}", "", command, versions, "", about, ""]
