"""Reproduce the paper-style table: for each network and data set, the original, the mild
and aggressive levels, the best single pruning level at the dynamic model's accuracy, the
dynamic model with the learned selector and with max-softmax, and the oracle bound --
test accuracy, Eyeriss energy per inference and the share routed to the mild network.

Long-running and resumable: every stage caches its result under ``--work DIR`` (baseline
checkpoints with per-epoch training checkpoints, the levels' fine-tuning checkpoints, compiled
models, per-row JSON), and
benchmarks/results/reproduce.{json,md} are rewritten after every finished row, so the
script can be stopped and restarted across sessions. A GPU is used when present.

    python benchmarks/reproduce.py                                  # every row
    python benchmarks/reproduce.py --networks resnet20 --datasets fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import (  # noqa: E402
    add_run_arguments,
    baseline_lr,
    budget_points,
    compiled_original,
    differences,
    previous_rows,
    write_atomic,
)

from examples.train_baseline import main as train_baseline  # noqa: E402
from prunec import __version__  # noqa: E402
from prunec.data import load_split  # noqa: E402
from prunec.dynamic import calibration_scheme  # noqa: E402
from prunec.errors import UserError  # noqa: E402
from prunec.frontend import load_with_meta  # noqa: E402
from prunec.report import (  # noqa: E402
    TARGET_ENERGY_REDUCTION,
    TARGET_MAX_ACCURACY_DROP,
    SingleLevelRival,
    Verdict,
    decimals_apart,
    input_normalization,
)

NETWORKS = ("resnet20", "resnet56", "vgg16_bn", "mobilenetv2")
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ("fashion-mnist", "cifar10")
#: Baseline training epochs a row needs before its verdict says something about a trained network.
BASELINE_EPOCHS = {"fashion-mnist": 6, "cifar10": 15, "synthetic": 2}
#: How rows made before prunec recorded ``selector_calibration`` calibrated the learned selector.
HALF_SPLIT = "the learned selector trains on half of the calibration split and is thresholded on the other half"
#: The committed example network: the resnet20 / Fashion-MNIST row uses it instead of training a baseline.
BUNDLED = ROOT / "examples" / "resnet20_fashion.pt"
#: Checkpoints committed with ``--carry`` so that a row's training, hours long on 2 CPU cores, resumes in a
#: fresh clone (a later session): mirrored into the row's --work folder before it runs.
CARRIED = ROOT / "benchmarks" / "checkpoints"


def _baseline(net: str, data: str, args: argparse.Namespace, work: Path) -> Path:
    """Train (or resume training) the unpruned network; the bundled example is reused, and a
    finished one only when it was trained as asked."""
    if net == "resnet20" and data == "fashion-mnist" and BUNDLED.exists():
        return BUNDLED
    epochs = args.baseline_epochs.get(data, 30)
    path = work / f"{baseline_name(epochs)}.pt"
    legacy = work / "baseline.pt"  # earlier runs' name; used only when it was trained as long
    if not path.exists() and legacy.exists() and load_with_meta(str(legacy))[1].get("epochs") == epochs:
        path = legacy
    lr = baseline_lr(net, args.baseline_lr)
    if path.exists():
        meta = load_with_meta(str(path))[1]
        made = {"seed": meta.get("seed", args.seed), "lr": meta.get("lr", lr), "epochs": meta.get("epochs", epochs)}
        differ = differences(made, {"seed": args.seed, "lr": lr, "epochs": epochs})
        if differ:
            raise UserError(f"{path} was trained otherwise ({'; '.join(differ)}): delete it, or ask for its settings")
        return path
    train_baseline(["--arch", f"zoo:{net}", "--data", data, "--epochs", str(epochs), "--seed", str(args.seed),
                    "--threads", str(args.threads), "--lr", str(lr),
                    "--checkpoint-dir", str(work / f"{baseline_name(epochs)}_ckpt"), "-o", str(path)])
    return path


def baseline_name(epochs: float) -> str:
    """The file stem of a row's baseline trained for ``epochs`` (its epoch checkpoints: STEM_ckpt/)."""
    return f"baseline_{epochs:g}ep"


def restore_carried(carried: Path, work: Path) -> list[Path]:
    """Copy the committed checkpoints of a row (``carried``) into its work folder where it lacks them,
    keeping their times (:func:`carry` tells a stale fine-tune folder by them)."""
    copied = []
    for src in sorted(p for p in carried.rglob("*") if p.is_file()):
        dst = work / src.relative_to(carried)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst.with_name(dst.name + ".tmp"))
            dst.with_name(dst.name + ".tmp").replace(dst)
            copied.append(dst)
    return copied


def carry(work: Path, carried: Path, baseline: str) -> list[Path]:
    """Replace ``carried`` with what resumes the row in ``work``: its finished baseline (file stem
    ``baseline``), or else that baseline's latest epoch checkpoint, and the latest epoch checkpoint of
    each fine-tune (of the newest folder per fine-tune: older keys are other settings' leftovers).
    Nothing to carry leaves ``carried`` as it was."""
    from prunec.training import latest_checkpoint

    finished = work / f"{baseline}.pt"
    keep = [finished] if finished.exists() else [Path(p) for p in [latest_checkpoint(str(work / f"{baseline}_ckpt"))]
                                                 if p]
    newest: dict[str, Path] = {}
    for folder in work.glob("levels_ckpt/*"):
        latest = latest_checkpoint(str(folder))
        slug = folder.name.rsplit("-", 1)[0]
        if latest and (slug not in newest or Path(latest).stat().st_mtime > newest[slug].stat().st_mtime):
            newest[slug] = Path(latest)
    keep += sorted(newest.values())
    if not keep:
        return []
    tmp = carried.with_name(carried.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for src in keep:
        dst = tmp / src.relative_to(work)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    swap_in(tmp, carried)
    return [carried / p.relative_to(work) for p in keep]


def _dynamic_variant(compiled: Any, test: Any, costs: dict[str, float]) -> dict[str, float]:
    logits_a, scores = compiled.model.scores(test.x)
    from prunec.training import predict

    logits_m = predict(compiled.mild, test)
    route = scores > compiled.threshold
    final = torch.where(route[:, None], logits_m, logits_a)
    share = float(route.float().mean())
    return {"accuracy": 100 * float((final.argmax(1) == test.y).float().mean()),
            "energy": costs["base"] + share * costs["mild"], "mild_share": share}


def run_row(net: str, data: str, args: argparse.Namespace, finished: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The row of ``net`` on ``data``: cached in --work when made with these settings, refreshed with
    --reuse-levels (``finished`` is the row the results hold, if any), else computed."""
    from prunec.pipeline import compile as compile_model
    from prunec.pipeline import energy_of, finetune_levels, fixed_level_jobs, per_inference
    from prunec.training import evaluate

    work = Path(args.work) / f"{net}_{data}"
    work.mkdir(parents=True, exist_ok=True)
    if not args.no_restore:
        restore_carried(args.carried / work.name, work)
    row_file = work / "row.json"
    cached = json.loads(row_file.read_text()) if row_file.exists() else None
    if cached is not None and not args.redo and not settings_differ(cached, args):
        return cached
    if args.reuse_levels:  # the committed row, or failing that the cached one, made as asked
        same = [r for r in (finished, cached) if r is not None and not _beyond_calibration(r, args)]
        return refresh_row(net, data, args, work, same[0] if same else cached)
    start = time.perf_counter()
    baseline = _baseline(net, data, args, work)
    model, meta = load_with_meta(str(baseline))
    if args.redo:  # recompute means fine-tune again, not resume finished fine-tunes
        shutil.rmtree(work / "levels_ckpt", ignore_errors=True)
    cfg = dict(mild=args.mild, aggressive=args.aggressive, epochs=args.epochs,
               aggressive_epochs=args.aggressive_epochs, seed=args.seed,
               selector="learned", max_accuracy_drop=args.max_accuracy_drop, progress=not args.quiet,
               augment=data == "cifar10", command=" ".join(sys.argv),
               checkpoint_dir=str(work / "levels_ckpt"))  # an interrupted row resumes its fine-tunes
    cfg_obj = _config(cfg)
    if args.jobs > 1 and args.mild is not None:  # fixed levels: every fine-tune of the row is known up front
        levels = {0.0, args.mild, args.aggressive}
        finetune_in_parallel(baseline, data, cfg, [*fixed_level_jobs(cfg_obj), *_single_jobs(args, cfg_obj, levels)],
                             args)
    out = work / "compiled"
    result = compile_model(model, data, output=str(out), force=True, model_meta=meta, **cfg)
    report = result.report
    norm = input_normalization(report)
    calib, test = load_split(data, "calibration", **norm), load_split(data, "test", **norm)
    dyn_soft = _max_softmax_variant(result.compiled, report, data, args)

    # single pruning levels with the same fine-tuning budget as the two levels, fine-tuned as a compile
    # fine-tunes its levels (the same checkpoint folders, which --jobs fills beforehand)
    singles = _levels_of(report)
    jobs = _single_jobs(args, cfg_obj, {s["ratio"] for s in singles})
    if args.jobs > 1 and args.mild is None:
        finetune_in_parallel(baseline, data, cfg, jobs, args)
    x = test.x[:1].clone()
    levels = finetune_levels(model, data, jobs, model_meta=meta, **cfg) if jobs else []
    for job, level in zip(jobs, levels, strict=True):
        program = energy_of(level, x, cfg_obj, calib.x[: cfg_obj.sparsity_samples])
        singles.append({"ratio": job.ratio, "accuracy": evaluate(level, test), "energy": per_inference(program)})
    row = _row(net, data, report, dyn_soft, singles, args, baseline, meta, time.perf_counter() - start)
    write_atomic(row_file, json.dumps(row, indent=1) + "\n")
    return row


def _single_jobs(args: argparse.Namespace, cfg: Any, levels: set[float]) -> list[Any]:
    """The extra single levels not among ``levels``, each fine-tuned as long as the most-trained of
    the two levels: no single level is short-changed."""
    from prunec.pipeline import LevelJob

    epochs = max(args.epochs, cfg.aggressive_finetune_epochs)
    jobs: list[Any] = []
    for r in args.single_ratios:
        if all(abs(r - done) > 1e-9 for done in [*levels, *(j.ratio for j in jobs)]):
            jobs.append(LevelJob(r, f"single level r={r:.2f}", epochs))
    return jobs


def finetune_in_parallel(baseline: Path, data: str, cfg: dict[str, Any], jobs: Sequence[Any],
                         args: argparse.Namespace) -> None:
    """Fine-tune ``jobs`` in ``--jobs`` processes of ``--threads`` threads each, into the row's checkpoint
    folders: the row then resumes them finished, on the numbers one process would give (the folders are
    keyed by everything the result depends on, the thread count included)."""
    import multiprocessing

    workers = min(args.jobs, len(jobs))
    if workers < 2:
        return
    print(f"fine-tuning {len(jobs)} levels in {workers} processes ({', '.join(j.description for j in jobs)}); "
          "each says when it is done", flush=True)
    quiet = {**cfg, "progress": False}
    # the workers ignore Ctrl-C: this process stops them, so no queued fine-tune starts after it (an epoch's
    # checkpoint is written atomically, so stopping one mid-epoch loses that epoch only)
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=signal.signal,
                                                     initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        tasks = [(str(baseline), data, quiet, job, args.threads) for job in jobs]
        for description in pool.imap_unordered(_finetune_job, tasks):  # the first error is the row's, at once
            print(f"  {description}: fine-tuned", flush=True)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _finetune_job(task: tuple[str, str, dict[str, Any], Any, int]) -> str:
    from prunec.pipeline import finetune_levels

    baseline, data, cfg, job, threads = task
    torch.set_num_threads(threads)
    model, meta = load_with_meta(baseline)
    finetune_levels(model, data, [job], model_meta=meta, **cfg)
    return job.description


def _max_softmax_variant(compiled: Any, report: dict[str, Any], data: str, args: argparse.Namespace
                         ) -> dict[str, float]:
    """The same two networks with the zero-parameter max-softmax selector, on the test split."""
    from prunec.dynamic import compile_dynamic

    norm = input_normalization(report)
    calib, test = load_split(data, "calibration", **norm), load_split(data, "test", **norm)
    soft = compile_dynamic(compiled.original, compiled.aggressive, compiled.mild, calib, selector="max-softmax",
                           max_accuracy_drop=args.max_accuracy_drop, costs=dict(compiled.costs),
                           preprocess=calib.info.preprocess, seed=args.seed)
    soft_costs = dict(compiled.costs)
    soft_costs["base"] -= report["energy"]["by_role"]["selector"]  # max-softmax has no layers to run
    return _dynamic_variant(soft, test, soft_costs)


def _levels_of(report: dict[str, Any]) -> list[dict[str, float]]:
    """The original, mild and aggressive networks as single-level points."""
    return [{"ratio": 0.0, "accuracy": report["accuracy"]["original"], "energy": report["energy"]["original"]},
            *({"ratio": report["levels"][role]["ratio"], "accuracy": report["accuracy"][role],
               "energy": report["energy"][role]} for role in ("mild", "aggressive"))]


def refresh_row(net: str, data: str, args: argparse.Namespace, work: Path, cached: dict[str, Any] | None
                ) -> dict[str, Any]:
    """``--reuse-levels``: the row ``cached`` again from the fine-tuned networks its compile left in
    ``work``, with this prunec's selector and calibration, and the extra single levels it measured
    (they do not depend on the selector). Only the selector calibration may differ from the row's
    settings; the row keeps the command that makes it from scratch."""
    from prunec.pipeline import compile as compile_model

    out = work / "compiled"
    committed = args.results / "artifacts" / work.name  # the row's compiled model, where it is committed
    if not (out / "report.json").is_file() and (committed / "report.json").is_file():
        shutil.copytree(committed, out, dirs_exist_ok=True)  # a fresh checkout refreshes from what it carries
    if cached is None or not (out / "report.json").is_file():
        raise UserError(f"--reuse-levels: {work} holds no finished row (row.json and compiled/) to refresh")
    made = json.loads((out / "report.json").read_text())
    if any(abs(made["accuracy"][level] - cached["variants"][level]["accuracy"]) > 1e-6
           or made["levels"][level]["ratio"] != cached["variants"][level]["ratio"] for level in ("mild", "aggressive")):
        raise UserError(f"--reuse-levels: the networks in {out} are not those of the {net} / {data} row")
    differ = _beyond_calibration(cached, args)
    if differ:
        raise UserError(f"--reuse-levels: the row in {work} was made with other settings ({'; '.join(differ)}); "
                        "give the command it was made with")
    start = time.perf_counter()
    made_from = cached["settings"].get("baseline")  # the row keeps its settings, this name included
    if made_from and (ROOT / made_from).is_file():
        model, meta = load_with_meta(str(ROOT / made_from))
    else:  # a new checkout, or a row that did not record it: the compiled model carries its original
        model, meta = compiled_original(out)
    result = compile_model(model, data, output=str(out), force=True, model_meta=meta, reuse_levels=str(out),
                           selector="learned", max_accuracy_drop=args.max_accuracy_drop, seed=args.seed,
                           progress=not args.quiet, augment=data == "cifar10", command=" ".join(sys.argv))
    report = result.report
    dyn_soft = _max_softmax_variant(result.compiled, report, data, args)
    fresh = _levels_of(report)
    singles = fresh + [s for s in cached["single_levels"] if all(abs(s["ratio"] - f["ratio"]) > 1e-9 for f in fresh)]
    settings = {**cached["settings"], "selector_calibration": _row_settings(args)["selector_calibration"]}
    row = _row(net, data, report, dyn_soft, singles, args, None, meta, cached["wall_seconds"], settings)
    row["refreshed"] = {"command": _row_settings(args)["command"], "wall_seconds":
                        round(time.perf_counter() - start, 1), "versions": _versions()}
    write_atomic(work / "row.json", json.dumps(row, indent=1) + "\n")
    if (committed / "report.json").is_file():
        replace_directory(out, committed)
    return row


def replace_directory(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src``, swapped in whole: an interrupted copy leaves ``dst`` as it was."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    swap_in(tmp, dst)


def swap_in(tmp: Path, dst: Path) -> None:
    """Move the finished folder ``tmp`` to ``dst``, the old ``dst`` aside first and then away."""
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.replace(old)
    tmp.replace(dst)
    shutil.rmtree(old, ignore_errors=True)


def _beyond_calibration(row: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The settings ``row`` differs in from ``args``, other than the selector calibration."""
    return [d for d in settings_differ(row, args) if not d.startswith("selector_calibration")]


def _row(net: str, data: str, report: dict[str, Any], dyn_soft: dict[str, float], singles: list[dict[str, float]],
         args: argparse.Namespace, baseline: Path | None, meta: dict[str, Any], wall: float,
         settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A table row from a compile report, the max-softmax variant and the single levels; ``settings``
    (a refreshed row's own) or else this run's, naming ``baseline``."""
    singles = sorted(singles, key=lambda s: s["ratio"])
    dyn_acc = report["accuracy"]["dynamic"]
    at_least = [s for s in singles if s["accuracy"] >= dyn_acc - 1e-9]
    best_single = min(at_least, key=lambda s: s["energy"], default=singles[0])  # the original at worst

    row = {
        "network": net, "dataset": data,
        "variants": {
            "original": {"accuracy": report["accuracy"]["original"], "energy": report["energy"]["original"]},
            "mild": {"accuracy": report["accuracy"]["mild"], "energy": report["energy"]["mild"],
                     "ratio": report["levels"]["mild"]["ratio"]},
            "aggressive": {"accuracy": report["accuracy"]["aggressive"], "energy": report["energy"]["aggressive"],
                           "ratio": report["levels"]["aggressive"]["ratio"]},
            "best_single_level": best_single,
            "dynamic_learned": {"accuracy": dyn_acc, "energy": report["energy"]["dynamic"],
                                "mild_share": report["mild_share"]},
            "dynamic_max_softmax": dyn_soft,
            "oracle": report["oracle"],
        },
        "single_levels": singles,
        "selector_auc": report["selector"]["auc"],
        "wall_seconds": round(wall, 1),
        "settings": settings or {**_row_settings(args), "baseline": _shown(baseline) if baseline else None,
                                 "baseline_epochs": meta.get("epochs"), "baseline_lr": meta.get("lr"),
                                 **({"baseline_trained_with": meta["trained_with"]} if "trained_with" in meta else {})},
    }
    orig_e = row["variants"]["original"]["energy"]
    for variant in row["variants"].values():
        variant["relative_energy"] = variant["energy"] / orig_e
    return row


def settings_differ(row: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """How the settings ``row`` was made with differ from what ``args`` asks for ([] when they match).

    A finished row is reused only when it answers the same question: a row cached with a 1-epoch
    baseline or fixed levels must not stand in for a run asking for 6 epochs or a search."""
    st = row.get("settings", {})
    names = ("seed", "threads", "epochs", "aggressive_epochs", "max_accuracy_drop", "levels", "selector_calibration")
    asked = {name: _row_settings(args)[name] for name in names}
    made = {**st, "levels": levels_made(row), "aggressive_epochs": aggressive_epochs_made(row),
            "selector_calibration": st.get("selector_calibration", HALF_SPLIT)}
    if (row["network"], row["dataset"]) != ("resnet20", "fashion-mnist") or not BUNDLED.exists():
        # the bundled example is reused as it is, whatever baseline length is asked for
        asked["baseline_epochs"] = args.baseline_epochs.get(row["dataset"], 30)
        if st.get("baseline_lr") is not None:  # rows made before it was recorded are not compared on it
            asked["baseline_lr"] = baseline_lr(row["network"], args.baseline_lr)
    done = {s["ratio"] for s in row.get("single_levels", [])}
    made["single_ratios"] = sorted(done & set(args.single_ratios))
    asked["single_ratios"] = sorted(set(args.single_ratios))
    return differences(made, asked)


def levels_made(row: dict[str, Any]) -> str:
    """"searched", or "fixed M/A" for levels given on the command line (older rows did not record it)."""
    st, v = row.get("settings", {}), row["variants"]
    if st.get("levels"):
        return st["levels"]
    if "--mild" in st.get("command", ""):
        return f"fixed {v['mild']['ratio']:g}/{v['aggressive']['ratio']:g}"
    return "searched"


def aggressive_epochs_made(row: dict[str, Any]) -> float | None:
    """The aggressive level's fine-tuning epochs (rows made before the option had ``epochs``)."""
    st = row.get("settings", {})
    return st.get("aggressive_epochs", st.get("epochs"))


def _row_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What produced this row: rows from separate runs are merged into one table, so each keeps its own."""
    return {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "seed": args.seed,
            "threads": args.threads, "epochs": args.epochs,
            "aggressive_epochs": args.epochs if args.aggressive_epochs is None else args.aggressive_epochs,
            "max_accuracy_drop": args.max_accuracy_drop,
            "levels": "searched" if args.mild is None else f"fixed {args.mild:g}/{args.aggressive:g}",
            "selector_calibration": calibration_scheme("learned"), "versions": _versions()}


def _epochs_shown(row: dict[str, Any]) -> str:
    epochs, aggressive = row["settings"]["epochs"], aggressive_epochs_made(row)
    if aggressive == epochs:
        return f"{epochs:g} fine-tuning epochs per level"
    return (f"{epochs:g} fine-tuning epochs for the mild level, {aggressive:g} for the aggressive one and "
            "the extra single levels")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _config(cfg: dict[str, Any]) -> Any:
    from prunec.pipeline import CompileConfig

    return CompileConfig(**{k: v for k, v in cfg.items() if k in CompileConfig.__dataclass_fields__})


def _versions() -> dict[str, str]:
    return {"prunec": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"}


def write_results(rows: list[dict[str, Any]], missing: list[dict[str, str]], args: argparse.Namespace,
                  wall: float) -> None:
    payload = {"rows": rows, "not_run": missing, "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
               "seed": args.seed, "versions": _versions(), "wall_seconds": round(wall, 1),
               "targets": {"energy_reduction": 0.70, "max_accuracy_drop": 2.0}}
    args.results.mkdir(parents=True, exist_ok=True)
    write_atomic(args.results / "reproduce.json", json.dumps(payload, indent=1) + "\n")
    render_views(payload, args.results)


def render_views(payload: dict[str, Any], results: Path) -> None:
    """reproduce.md from ``payload``, and the README's summary table when these are the committed results."""
    write_atomic(results / "reproduce.md", render_markdown(payload))
    if results == RESULTS:
        write_atomic(README, readme_with_summary(README.read_text(), payload))


def render_markdown(payload: dict[str, Any]) -> str:
    lines = ["# Reproduction: dynamic two-level pruning on Eyeriss", "",
             f"Last run that wrote this file: `{payload['command']}` (each row names its own command)  ",
             f"Seed: {payload['seed']}  ",
             f"Versions: {', '.join(f'{k} {v}' for k, v in payload['versions'].items())}  ",
             f"Wall time: {payload['wall_seconds']:.0f} s", "",
             "Accuracy in % on the test split (Fashion-MNIST: official 10k test set; CIFAR-10: 5k held-out "
             "split of the training set, images 45,000-49,999). Energy: Eyeriss, normalized units per "
             "inference (batch 1), and relative to the original. Target: >= 70 % energy reduction at "
             "<= 2.0 points accuracy loss (the paper: ~70 % at ~3 points on CIFAR-10).", "",
             "Budgets: the original is the baseline checkpoint. The level search fine-tunes every candidate "
             "for 0.3 epochs; the chosen mild and aggressive levels then continue for `--epochs` more (rows "
             "with fixed levels skip the search and fine-tune each level `--epochs` from the start). The "
             "extra single levels get `--epochs` (`--aggressive-epochs` when that is more) from scratch (slightly less "
             "for a searched row), and the best single level is "
             "picked on the test split (which favours it); the dynamic model's threshold comes from the "
             "calibration split only. The learned selector is thresholded on 5-fold cross-fitted scores of the "
             "whole calibration split and deployed as trained on all of it (each row names its scheme); "
             "max-softmax is thresholded on all of it.", "",
             "Two baselines without a selector: the *best single level* is the cheapest single pruning "
             "level at least as accurate as the dynamic model; the *mix of two single levels* sends a "
             "random share of the inputs to one level and the rest to another, which reaches any accuracy "
             "between them at the interpolated energy. A ratio below 1x means the dynamic model uses less "
             "energy at the same accuracy; only below the mix does its selector earn its keep.", ""]
    lines += summary_table(payload["rows"], payload.get("not_run", [])) + [""]
    names = ["original", "mild", "aggressive", "best_single_level", "dynamic_learned", "dynamic_max_softmax",
             "oracle"]
    for row in payload["rows"]:
        v = row["variants"]
        orig = v["original"]
        lines += [f"## {row['network']} on {row['dataset']}", "",
                  "| variant | accuracy % | Δ acc (pts) | energy | rel. energy | share to mild |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name in names:
            d = v[name]
            share = f"{d['mild_share']:.1%}" if "mild_share" in d else "—"
            label = name + (f" (ratio {d['ratio']:.2f})" if "ratio" in d else "")
            lines.append(f"| {label} | {d['accuracy']:.2f} | {d['accuracy'] - orig['accuracy']:+.2f} | "
                         f"{d['energy']:.4g} | {d['energy'] / orig['energy']:.1%} | {share} |")
        dyn = v["dynamic_learned"]
        reduction, drop = 1 - dyn["energy"] / orig["energy"], orig["accuracy"] - dyn["accuracy"]
        met = verdict(row).startswith("met")
        short = (" The baseline was trained shorter than this benchmark's default, so the row shows that "
                 "the pipeline runs on this network, not that the method holds for a trained one."
                 if "short baseline" in verdict(row) else "")
        lines += ["", f"Target **{verdict(row)}**: {reduction:.1%} energy reduction at {drop:.2f} points accuracy "
                  "loss" + ("." if met else f" ({_shortfall(row)}).") + short,
                  f"Learned vs max-softmax selector: {dyn['energy'] / v['dynamic_max_softmax']['energy']:.3f}x "
                  f"the energy at {dyn['accuracy'] - v['dynamic_max_softmax']['accuracy']:+.2f} points. "
                  f"Dynamic vs best single level at its accuracy: "
                  f"{dyn['energy'] / v['best_single_level']['energy']:.3f}x the energy; vs a random mix "
                  f"of two single levels at its accuracy: {_vs_mix(row)}. "
                  f"Selector ROC AUC {_fmt_auc(row['selector_auc'])}."
                  f" Row wall time {row['wall_seconds']:.0f} s.", ""]
        if "settings" in row:
            st = row["settings"]
            levels = levels_made(row)
            baseline = f"baseline trained {st['baseline_epochs']:g} epochs, " if st.get("baseline_epochs") else ""
            lines += [f"Row produced by `{st['command']}` ({baseline}levels {levels}, seed {st['seed']}, "
                      f"{st['threads']} threads, {_epochs_shown(row)}, "
                      f"max drop {st['max_accuracy_drop']:g} pts; "
                      f"{st.get('selector_calibration', HALF_SPLIT)}).", ""]
            if len(st.get("baseline_trained_with") or []) > 1:
                lines += [f"Its baseline was trained in parts on different devices or thread counts "
                          f"({mixed_runs(st['baseline_trained_with'])}), so a rerun from scratch will not match it "
                          "bit for bit.", ""]
            if "refreshed" in row:
                lines += [f"Refreshed by `{row['refreshed']['command']}` in {row['refreshed']['wall_seconds']:.0f} s: "
                          "the same fine-tuned networks, this prunec's selector calibration.", ""]
        else:
            lines += ["Row from an earlier run that did not record its own command (see this file's git "
                      "history).", ""]
    if payload.get("not_run"):
        lines += ["## Not run", ""]
        lines += [f"- {m['network']} on {m['dataset']}: {m['reason']}" for m in payload["not_run"]]
        lines.append("")
    return "\n".join(lines)


def mixed_runs(runs: Sequence[dict[str, Any]]) -> str:
    """"epochs 1-10 on cpu, 1 thread; 11-15 on cpu, 2 threads" from a checkpoint's ``trained_with``."""
    def where(run: dict[str, Any]) -> str:
        threads = run.get("threads")
        return (run.get("device") or "unrecorded") + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")

    return "; ".join(f"epochs {a}" + (f"-{b}" if b != a else "") + f" on {where(r)}"
                     for r in runs for a, b in [r["epochs"]])


def single_level_mix(singles: list[dict[str, float]], accuracy: float) -> float | None:
    """Least expected energy that reaches ``accuracy`` without a selector: one single level at
    least that accurate, or a random share of the inputs sent to a more accurate level and the
    rest to a less accurate one (the line between any two levels is reachable that way), so a
    dynamic model only earns its keep below it. None when no level is that accurate."""
    options = [s["energy"] for s in singles if s["accuracy"] >= accuracy]
    for lo in singles:
        for hi in singles:
            if lo["accuracy"] < accuracy < hi["accuracy"]:
                share = (accuracy - lo["accuracy"]) / (hi["accuracy"] - lo["accuracy"])
                options.append(lo["energy"] + share * (hi["energy"] - lo["energy"]))
    return min(options, default=None)


def _vs_mix(row: dict[str, Any]) -> str:
    dyn = row["variants"]["dynamic_learned"]
    mix = single_level_mix(row["single_levels"], dyn["accuracy"])
    return "—" if mix is None else f"{dyn['energy'] / mix:.2f}x"


README = ROOT / "README.md"
#: The README's copy of the summary table sits between these lines; ``--render`` refreshes it.
README_MARKERS = ("<!-- reproduce.py --render: summary -->", "<!-- end of summary -->")


def readme_with_summary(readme: str, payload: dict[str, Any]) -> str:
    """``readme`` with the summary table between :data:`README_MARKERS` replaced by the current one."""
    begin, end = README_MARKERS
    if begin not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the summary markers {begin!r} ... {end!r}")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    return "\n".join([head + begin, *summary_table(payload["rows"], payload.get("not_run", [])), end]) + tail


def verdict(row: dict[str, Any]) -> str:
    """"met" or "missed" against the target (at least 70 % less energy than the original, at most 2.0
    points lost on test, and less energy than the best single level at least as accurate), flagged
    when the baseline was trained shorter than :data:`BASELINE_EPOCHS` (a weak original is easy to
    match, so such a row is no evidence)."""
    met = _verdict(row).met
    epochs = row.get("settings", {}).get("baseline_epochs")
    short = epochs is not None and epochs < BASELINE_EPOCHS.get(row["dataset"], 0)
    return ("met" if met else "missed") + (" (short baseline)" if short else "")


def _verdict(row: dict[str, Any]) -> Verdict:
    """The row as prunec.report judges a compile: the same target, the same tolerances."""
    v = row["variants"]
    orig, dyn, single = v["original"], v["dynamic_learned"], v["best_single_level"]
    return Verdict(1 - dyn["energy"] / orig["energy"], orig["accuracy"] - dyn["accuracy"],
                   SingleLevelRival("best single level", dyn["energy"] / single["energy"]))


def _shortfall(row: dict[str, Any]) -> str:
    """By how much a missed row misses each part of the target, with the decimals that show on which side."""
    v, single = _verdict(row), row["variants"]["best_single_level"]
    parts = []
    if not v.energy_met:
        pct, target = 100 * v.energy_reduction, 100 * TARGET_ENERGY_REDUCTION
        parts.append(f"short by {target - pct:.{decimals_apart(pct, target, 1)}f}% energy reduction")
    if not v.accuracy_met:
        over = v.accuracy_drop - TARGET_MAX_ACCURACY_DROP
        parts.append(f"{over:.{decimals_apart(v.accuracy_drop, TARGET_MAX_ACCURACY_DROP, 2)}f} points of accuracy "
                     "over the budget")
    if not v.beats_single_level:
        where = f" (ratio {single['ratio']:.2f})" if "ratio" in single else ""
        ratio = v.rival.energy_ratio
        parts.append(f"{ratio:.{decimals_apart(ratio, 1.0, 4)}f}x the energy of the best single level{where}, "
                     "which is at least as accurate")
    return "; ".join(parts)


def summary_table(rows: list[dict[str, Any]], not_run: Sequence[dict[str, str]] = ()) -> list[str]:
    """One line per network and data set: the dynamic model (learned selector) against the target."""
    lines = ["| network | data set | baseline epochs | levels (mild/aggr.) | original % | dynamic % | Δ acc (pts) "
             "| energy reduction | vs best single level | vs mix of two single levels "
             "| max-softmax selector: reduction (Δ pts) | target |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        v, st = row["variants"], row.get("settings", {})
        orig, dyn, soft = v["original"], v["dynamic_learned"], v["dynamic_max_softmax"]
        reduction, drop = 1 - dyn["energy"] / orig["energy"], orig["accuracy"] - dyn["accuracy"]
        soft_cell = f"{1 - soft['energy'] / orig['energy']:.1%} ({soft['accuracy'] - orig['accuracy']:+.2f})"
        levels = f"{v['mild']['ratio']:.2f}/{v['aggressive']['ratio']:.2f} ({levels_made(row).split()[0]})"
        epochs = f"{st['baseline_epochs']:g}" if st.get("baseline_epochs") else "—"
        lines.append(f"| {row['network']} | {row['dataset']} | {epochs} | {levels} | {orig['accuracy']:.2f} | "
                     f"{dyn['accuracy']:.2f} | {-drop:+.2f} | {reduction:.1%} | "
                     f"{dyn['energy'] / v['best_single_level']['energy']:.2f}x | {_vs_mix(row)} | {soft_cell} | "
                     f"{verdict(row)} |")
    lines += [f"| {m['network']} | {m['dataset']} |" + " — |" * 9 + " not run |" for m in not_run]
    return lines


def _fmt_auc(auc: float | None) -> str:
    return "n/a" if auc is None else f"{auc:.3f}"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line, with ``baseline_epochs`` resolved to epochs per data set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=(*DATASETS, "synthetic"),
                        help="synthetic: a smoke run of the script, not part of the table")
    parser.add_argument("--mild", type=float, default=None, help="fixed mild ratio (default: searched)")
    parser.add_argument("--aggressive", type=float, default=None, help="fixed aggressive ratio")
    parser.add_argument("--epochs", type=float, default=1.5, help="fine-tuning epochs per level")
    parser.add_argument("--aggressive-epochs", type=float, default=None,
                        help="fine-tuning epochs of the aggressive level and the extra single levels "
                        "(default: --epochs)")
    parser.add_argument("--max-accuracy-drop", type=budget_points, default=1.0)
    parser.add_argument("--single-ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8])
    parser.add_argument("--baseline-epochs", type=float,
                        help="training epochs of the baselines (default: 6 on Fashion-MNIST, 15 on CIFAR-10)")
    parser.add_argument("--reuse-levels", action="store_true",
                        help="recompute rows from the fine-tuned networks their compile left in --work (after a "
                        "change to the selector or its calibration): minutes instead of hours; the rows must "
                        "have been made with the same settings otherwise")
    parser.add_argument("--carry", action="store_true",
                        help="only copy the rows' latest checkpoints from --work into --carried, to commit: a fresh "
                        "clone then resumes their training there")
    parser.add_argument("--carried", type=Path, default=CARRIED,
                        help="committed checkpoints, copied into --work where it lacks them "
                        f"(default: {CARRIED.relative_to(ROOT)})")
    parser.add_argument("--no-restore", action="store_true",
                        help="do not copy the committed checkpoints into --work (a rerun from scratch)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="fine-tune a row's levels in this many processes at once, each with --threads threads "
                        "(fixed levels: all of them; searched: the extra single levels); same numbers as one")
    parser.add_argument("--render", action="store_true",
                        help="only re-render reproduce.md and the README summary table from reproduce.json")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    # before hours of baseline training, not after
    for name, ratio in (("--mild", args.mild), ("--aggressive", args.aggressive)):
        if ratio is not None and not 0 <= ratio < 1:
            parser.error(f"{name} must be a pruning ratio in [0, 1), got {ratio:g}")
    if args.mild is not None and args.aggressive is not None and args.mild >= args.aggressive:
        parser.error(f"--mild ({args.mild:g}) must prune less than --aggressive ({args.aggressive:g})")
    if args.render and not (args.results / "reproduce.json").is_file():
        parser.error(f"--render: no reproduce.json in {args.results}")
    if Path(args.work).exists() and not Path(args.work).is_dir():
        parser.error(f"--work {args.work} is not a directory")
    if not all(0 < r < 1 for r in args.single_ratios):
        parser.error(f"--single-ratios must be pruning ratios in (0, 1), got {' '.join(map(str, args.single_ratios))}")
    if (args.mild is None) != (args.aggressive is None):
        parser.error("--mild and --aggressive go together (fixed levels); give both or neither")
    epochs = args.baseline_epochs
    args.baseline_epochs = dict(BASELINE_EPOCHS)
    if epochs is not None:
        args.baseline_epochs = dict.fromkeys(args.baseline_epochs, epochs)
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    if args.render:
        render_views(json.loads((args.results / "reproduce.json").read_text()), args.results)
        return 0
    if args.carry:
        for data in args.datasets:
            for net in args.networks:
                row = f"{net}_{data}"
                kept = carry(Path(args.work) / row, args.carried / row, baseline_name(args.baseline_epochs[data]))
                for path in kept:
                    print(f"carried {_shown(path)} ({path.stat().st_size / 1e6:.1f} MB)")
                if not kept:
                    print(f"{net} on {data}: no checkpoints in {_shown(Path(args.work) / row)}; "
                          f"{_shown(args.carried / row)} left as it was")
        return 0
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if "synthetic" in args.datasets and args.results == RESULTS:
        parser.error("a synthetic smoke run needs --results DIR (it is not part of the committed table)")
    computed: dict[tuple[str, str], dict[str, Any]] = {}
    for data in args.datasets:
        for net in args.networks:
            finished = previous_rows(args.results / "reproduce.json").get((net, data))
            if finished is not None and not args.redo:
                differ = settings_differ(finished, args)
                if not differ:
                    continue
                print(f"{net} on {data}: the finished row was made with other settings "
                      f"({'; '.join(differ)}); not reusing it", flush=True)
            try:
                computed[(net, data)] = run_row(net, data, args, finished)
            except UserError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            # rows another run finished meanwhile are kept; this run's own rows win
            done = {**previous_rows(args.results / "reproduce.json"), **computed}
            order = (*DATASETS, "synthetic")
            rows = [done[k] for k in sorted(done, key=lambda k: (order.index(k[1]), NETWORKS.index(k[0])))]
            missing = [{"network": n, "dataset": d, "reason": "not run yet: baseline training and fine-tuning "
                        "on 2 CPU cores did not fit the sessions so far; the script resumes from its checkpoints"}
                       for d in DATASETS for n in NETWORKS if (n, d) not in done]
            write_results(rows, missing, args, time.perf_counter() - start)
            print(f"finished {net} on {data}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the same command resumes from the checkpoints in --work", file=sys.stderr)
        sys.exit(130)
