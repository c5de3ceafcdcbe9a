"""The compile pipeline: trace, prune at two levels, fine-tune, insert and calibrate the
selector, lower every part to the target, and report.

``compile`` is the whole of ``prunec compile``. Each step is a small function here so a
benchmark (benchmarks/reproduce.py) can drive the same steps and cache between them.
"""

from __future__ import annotations

import datetime
import inspect
import itertools
import math
import os
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import fx, nn

from prunec import __version__
from prunec.accuracy_bound import format_confidence
from prunec.data import Split, fingerprint, load_split
from prunec.errors import UserError, check_seed, is_number
from prunec.report import MEMORY_LEVELS, ROLES
from prunec.terminal import make_console

#: Candidate channel-pruning ratios the level search tries (0 = the unpruned network).
SEARCH_RATIOS = (0.3, 0.5, 0.6, 0.7, 0.8)


@dataclass
class CompileConfig:
    """Every knob of a compile run (defaults are what ``prunec compile`` uses)."""

    data: str = "fashion-mnist"
    data_root: str | None = None
    mean: Sequence[float] | None = None  # the model's input normalization, where not the data set's
    std: Sequence[float] | None = None
    mild: float | None = None
    aggressive: float | None = None
    method: str = "l1"
    aggressive_method: str | None = None
    pruner: str = "structured"
    selector: str = "learned"
    max_accuracy_drop: float | None = 1.5
    mild_rate: float | None = None
    confidence: float | None = None  # the budget must hold for the drop's upper bound at this confidence
    epochs: float = 1.0
    aggressive_epochs: float | None = None  # None: ``epochs``; the aggressive level has more to recover
    search_epochs: float = 0.3
    search_ratios: Sequence[float] | None = None  # the level search's candidates (None: SEARCH_RATIOS)
    train_samples: int | None = None
    lr: float = 0.02
    batch_size: int = 128
    batch: int = 1
    hw: str | None = None
    target: str = "eyeriss"
    seed: int = 0
    sparsity_samples: int = 256
    augment: bool = False
    progress: bool = True
    leaf_modules: Sequence[str] = ()
    weight_gating: bool | None = None  # None: on when the pruner zeroes weights (unstructured)
    reuse_levels: str | None = None  # an earlier output DIR whose fine-tuned levels to reuse
    checkpoint_dir: str | None = None  # where fine-tunes keep checkpoints, so a rerun resumes them
    command: str = ""

    @property
    def aggressive_finetune_epochs(self) -> float:
        """Fine-tuning epochs of the aggressive level (``aggressive_epochs``, else ``epochs``)."""
        return self.epochs if self.aggressive_epochs is None else self.aggressive_epochs

    @property
    def gates_weights(self) -> bool:
        """Whether the energy model credits zero weights (Eyeriss v1 itself gates only zero activations)."""
        return self.pruner == "unstructured" if self.weight_gating is None else self.weight_gating


@dataclass
class Level:
    """One pruned network and what we know about it."""

    ratio: float
    model: fx.GraphModule
    energy: float = float("nan")
    calib_logits: torch.Tensor | None = None
    test_accuracy: float | None = None
    program: Any = None


@dataclass
class CompileResult:
    compiled: Any  # prunec.artifact.CompiledModel
    report: dict[str, Any]
    programs: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None


# --------------------------------------------------------------------------- steps


def _epochs_text(cfg: CompileConfig) -> str:
    if cfg.aggressive_finetune_epochs == cfg.epochs:
        return f"{cfg.epochs:g} epochs each"
    return f"{cfg.epochs:g} and {cfg.aggressive_finetune_epochs:g} epochs"


def _log(console: Console, step: str, text: str) -> None:
    console.print(f"[bold cyan]{step}[/] {text}")


def near_chance_note(accuracy: float, info: Any) -> str | None:
    """A warning when the original classifies the test split barely better than guessing.

    That is nearly always a mismatch, not a bad model: another data set, another class order,
    or another input normalization than the model was trained with. Every number after it
    would describe a broken baseline.
    """
    chance = 100.0 / info.num_classes
    if accuracy >= chance + 0.2 * (100.0 - chance):  # 28 % for 10 classes, 60 % for 2
        return None
    return (f"the original scores {accuracy:.2f} % on the {info.name} test split, near chance ({chance:.1f} %): "
            f"check that it was trained on this data set with inputs normalized by mean "
            f"{','.join(f'{v:g}' for v in info.mean)} and std {','.join(f'{v:g}' for v in info.std)} "
            "(--mean/--std change them).")


def prune_level(original: fx.GraphModule, x: torch.Tensor, ratio: float, cfg: CompileConfig,
                method: str | None = None) -> fx.GraphModule:
    from prunec.pruning import prune

    if ratio == 0:
        return prune(original, x, ratio=0.0)
    return prune(original, x, ratio=ratio, method=method or cfg.method, pruner=cfg.pruner, seed=cfg.seed)


def finetune_level(model: nn.Module, teacher: nn.Module, train: Split, epochs: float, cfg: CompileConfig,
                   description: str, checkpoint_dir: str | None = None) -> nn.Module:
    from prunec.training import finetune

    if epochs > 0:
        fixed = ("momentum", "weight_decay", "kd_alpha", "kd_temperature")  # finetune's defaults, named
        settings = {"epochs": float(epochs), "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
                    "augment": cfg.augment, "keep_zeros": True,
                    **{k: p.default for k, p in inspect.signature(finetune).parameters.items() if k in fixed}}
        only_last = False
        if checkpoint_dir is None and cfg.checkpoint_dir is not None:
            from prunec.resume import level_checkpoint_dir

            checkpoint_dir = str(level_checkpoint_dir(cfg.checkpoint_dir, model, teacher, train, settings,
                                                      description))
            only_last = True
        # weights a pruner zeroed stay zero (a no-op for channel pruning: trained nets hold no exact zeros)
        done = finetune(model, train, teacher=teacher, progress=cfg.progress, description=description,
                        checkpoint_dir=checkpoint_dir, keep_last_checkpoint_only=only_last, **settings)
        if done.resumed_from_step is not None and cfg.progress:
            make_console(stderr=True).print(f"{description}: resumed at step {done.resumed_from_step} of "
                                       f"{done.total_steps} from {checkpoint_dir}")
    return model.eval()


@dataclass(frozen=True)
class LevelJob:
    """One pruning level to prune and fine-tune; its description names its checkpoint folder."""

    ratio: float
    description: str
    epochs: float
    method: str | None = None


def fixed_level_jobs(cfg: CompileConfig) -> list[LevelJob]:
    """The mild and aggressive levels of a compile given both ratios."""
    assert cfg.mild is not None and cfg.aggressive is not None
    return [LevelJob(cfg.mild, "fine-tune mild", cfg.epochs if cfg.mild > 0 else 0),
            LevelJob(cfg.aggressive, "fine-tune aggressive", cfg.aggressive_finetune_epochs, cfg.aggressive_method)]


def run_level_job(original: fx.GraphModule, x: torch.Tensor, train: Split, cfg: CompileConfig,
                  job: LevelJob) -> fx.GraphModule:
    level = prune_level(original, x, job.ratio, cfg, job.method)
    return finetune_level(level, original, train, job.epochs, cfg, job.description)


def finetune_levels(model: nn.Module, data: str | Split, jobs: Sequence[LevelJob], *,
                    model_meta: dict[str, Any] | None = None, **options: Any) -> list[fx.GraphModule]:
    """Prune and fine-tune ``jobs`` exactly as :func:`compile` with these options does, nothing else.

    With a ``checkpoint_dir`` they land in the folders a compile looks in, so a compile run
    afterwards finds them finished: several processes can fine-tune one compile's levels at
    once (``benchmarks/reproduce.py --jobs``)."""
    _check_arguments(model, data)
    cfg = _config(data, model_meta, options)
    if cfg.checkpoint_dir is not None:
        _prepare_checkpoint_dir(cfg.checkpoint_dir, None)
    train, _, _, x, original = _start(model, cfg)
    return [run_level_job(original, x, train, cfg, job) for job in jobs]


def energy_of(model: nn.Module, x: torch.Tensor, cfg: CompileConfig, sparsity_images: torch.Tensor,
              routed_share: float | None = None) -> Any:
    """Lower ``model`` to the target with activation sparsity measured on calibration images."""
    from prunec.lowering import lower, measure_activation_sparsity

    model = getattr(model, "graph_module", model)  # a DynamicModel lowers through its role-tagged graph
    sparsity = measure_activation_sparsity(model, sparsity_images)
    options = {"weight_sparsity": True} if cfg.gates_weights and _target_takes(cfg, "weight_sparsity") else {}
    return lower(model, x, target=cfg.target, batch=cfg.batch, hw=cfg.hw, activation_sparsity=sparsity,
                 routed_share=routed_share, **options)


def _target_takes(cfg: CompileConfig, option: str) -> bool:
    """An option the user asked for goes through (the target refuses it clearly if it must);
    one prunec turns on by default only reaches targets that name it."""
    if cfg.weight_gating:
        return True
    from prunec.backends import get_target

    return option in inspect.signature(get_target(cfg.target).lower).parameters


def per_inference(program: Any) -> float:
    return float(program.to_dict()["totals"]["energy_per_inference"])


def search_levels(original: fx.GraphModule, x: torch.Tensor, train: Split, calib: Split,
                  original_correct: torch.Tensor, original_energy: float, cfg: CompileConfig,
                  console: Console) -> tuple[float, float, list[Level]]:
    """Pick (mild, aggressive) ratios: short fine-tunes of every candidate, then the pair
    whose max-softmax routing meets the accuracy constraint on calibration data with the
    least expected energy. Returns the ratios and the candidates (for the trade-off plot).
    """
    from prunec.training import predict

    levels: list[Level] = []
    for ratio in sorted(SEARCH_RATIOS if cfg.search_ratios is None else cfg.search_ratios):
        model = prune_level(original, x, ratio, cfg)
        finetune_level(model, original, train, cfg.search_epochs, cfg, f"search r={ratio:.2f}")
        level = Level(ratio, model)
        level.calib_logits = predict(model, calib)
        level.program = energy_of(model, x, cfg, calib.x[: cfg.sparsity_samples])
        level.energy = per_inference(level.program)
        acc = 100 * float((level.calib_logits.argmax(1) == calib.y).float().mean())
        _log(console, "search", f"ratio {ratio:.2f}: calibration accuracy {acc:.2f}%, "
             f"energy {level.energy / original_energy:.1%} of the original")
        levels.append(level)
    orig_level = Level(0.0, original, original_energy, predict(original, calib))
    best: tuple[float, float, float] | None = None
    drop = cfg.max_accuracy_drop if cfg.max_accuracy_drop is not None else 1.0
    for mild, aggr in itertools.permutations([orig_level, *levels], 2):
        if mild.ratio >= aggr.ratio:
            continue
        point = pair_point(mild.calib_logits, aggr.calib_logits, calib, original_correct, mild.energy,
                           aggr.energy, original_energy, drop, cfg.confidence)
        if point.feasible and (best is None or point.expected_energy < best[2]):
            best = (mild.ratio, aggr.ratio, point.expected_energy)
    if best is None:
        within = (f"keeps calibration accuracy within {drop} points of the original" if cfg.confidence is None
                  else f"bounds the accuracy drop within {drop} points at {format_confidence(cfg.confidence)} "
                  "confidence")
        raise UserError(f"no pair of pruning levels {within} even with short fine-tunes; give --mild/--aggressive, "
                        "a larger --max-accuracy-drop" + ("" if cfg.confidence is None else " or a lower --confidence"))
    _log(console, "search", f"chose mild {best[0]:.2f}, aggressive {best[1]:.2f} "
         f"(estimated {best[2] / original_energy:.1%} of the original's energy)")
    if best[2] >= original_energy:  # routing most inputs to the original is all that met the budget
        _log(console, "search", "[yellow]warning:[/] no pair saves energy within the accuracy budget: the pruned "
             "levels lose too much (fine-tune them longer: --search-epochs, --epochs) or the budget is too tight")
    return best[0], best[1], levels


def pair_point(mild_logits: torch.Tensor, aggr_logits: torch.Tensor, calib: Split, original_correct: torch.Tensor,
               mild_energy: float, aggr_energy: float, original_energy: float, max_drop: float,
               confidence: float | None = None) -> Any:
    """The cheapest max-softmax operating point of a (mild, aggressive) pair on calibration data.

    ``original_correct``: the original's per-image correctness on ``calib``."""
    from prunec.calibration import choose_threshold, sweep
    from prunec.selectors import max_softmax_score

    original_calib_acc = 100 * float(original_correct.float().mean())
    points = sweep(max_softmax_score(aggr_logits), aggr_logits.argmax(1) == calib.y,
                   mild_logits.argmax(1) == calib.y, original_calib_acc / 100,
                   {"base": aggr_energy, "mild": mild_energy, "original": original_energy},
                   original_correct=original_correct)
    return choose_threshold(points, max_accuracy_drop=max_drop, confidence=confidence)


def refine_levels(original: fx.GraphModule, x: torch.Tensor, train: Split, calib: Split,
                  original_correct: torch.Tensor, original_energy: float, candidates: list[Level],
                  cfg: CompileConfig, console: Console) -> tuple[nn.Module, nn.Module]:
    """Fine-tune the searched levels fully, then look one level further.

    Short fine-tunes understate how much accuracy a heavily pruned network recovers, so
    the search errs towards mild aggressive levels. Here the chosen mild and aggressive
    networks continue training for the full budget; then the next more aggressive
    candidate gets the same budget, and it replaces the aggressive level while that
    lowers the expected energy under the accuracy constraint.
    """
    from prunec.training import predict

    by_ratio = {level.ratio: level for level in candidates}
    drop = cfg.max_accuracy_drop if cfg.max_accuracy_drop is not None else 1.0
    if cfg.mild > 0:
        mild = by_ratio[cfg.mild].model
        finetune_level(mild, original, train, cfg.epochs, cfg, f"fine-tune mild r={cfg.mild:.2f}")
    else:
        mild = original
    mild_logits = predict(mild, calib)
    mild_energy = per_inference(energy_of(mild, x, cfg, calib.x[: cfg.sparsity_samples]))
    ladder = sorted(r for r in by_ratio if r >= cfg.aggressive)
    best: tuple[Any, nn.Module, float] | None = None
    for ratio in ladder:
        level = by_ratio[ratio]
        finetune_level(level.model, original, train, cfg.aggressive_finetune_epochs, cfg,
                       f"fine-tune aggressive r={ratio:.2f}")
        # costed again (fine-tuning moves the activations' zeros, and with them the zero-skipping savings);
        # level.energy stays the search-time one, beside the search-time accuracy the report lists
        aggr_energy = per_inference(energy_of(level.model, x, cfg, calib.x[: cfg.sparsity_samples]))
        point = pair_point(mild_logits, predict(level.model, calib), calib, original_correct, mild_energy,
                           aggr_energy, original_energy, drop, cfg.confidence)
        _log(console, "[3/6]", f"aggressive {ratio:.2f} after {cfg.aggressive_finetune_epochs:g} epochs: "
             + (f"{point.expected_energy / original_energy:.1%} of the original's energy"
                if point.feasible else "misses the accuracy constraint"))
        if best is not None and (not point.feasible or point.expected_energy >= best[0].expected_energy):
            break
        if point.feasible or best is None:
            best = (point, level.model, ratio)
    assert best is not None
    cfg.aggressive = best[2]
    _log(console, "[3/6]", f"levels: mild {cfg.mild:.2f}, aggressive {cfg.aggressive:.2f}")
    return mild, best[1]


# --------------------------------------------------------------------------- the pipeline


def compile(model: nn.Module, data: str | Split = "fashion-mnist", *, output: str | None = None,
            force: bool = False, model_meta: dict[str, Any] | None = None,
            console: Console | None = None, **options: Any) -> CompileResult:
    """Compile ``model`` into a dynamic mild/aggressive/selector model and report its energy.

    ``options`` are :class:`CompileConfig` fields. With ``output`` every artefact is written
    to that directory atomically (see :mod:`prunec.outdir`).
    """
    from prunec.outdir import atomic_directory, check_writable

    _check_arguments(model, data)
    cfg = _config(data, model_meta, options)
    if output is not None:
        check_writable(output, force)  # fail before hours of work, not after
    if cfg.checkpoint_dir is not None:
        _prepare_checkpoint_dir(cfg.checkpoint_dir, output)
    console = console or make_console(stderr=True, quiet=not cfg.progress)
    start = time.perf_counter()
    from prunec.training import evaluate, predict

    train, calib, test, x, original = _start(model, cfg)
    info = test.info
    reused = None
    if cfg.reuse_levels:  # checked against this model before the work below
        from prunec.reuse import reuse_levels

        reused = reuse_levels(cfg.reuse_levels, original, x, cfg, info.name, calib.x[:64], fingerprint(calib))

    _log(console, "[1/6]", f"original on {info.name}: evaluating on {len(test):,} test images")
    orig_test_acc = evaluate(original, test)
    orig_calib_correct = predict(original, calib).argmax(1) == calib.y
    sparsity_images = calib.x[: cfg.sparsity_samples]
    orig_program = energy_of(original, x, cfg, sparsity_images)
    orig_energy = per_inference(orig_program)
    _log(console, "[1/6]", f"test accuracy {orig_test_acc:.2f}%, Eyeriss energy {orig_energy:.4g} per inference")
    if (suspicious := near_chance_note(orig_test_acc, info)) is not None:
        (console if not console.quiet else make_console(stderr=True)).print(f"[bold yellow]warning:[/] {suspicious}")

    candidates: list[Level] = []
    if reused is not None or (cfg.mild is not None and cfg.aggressive is not None):
        _log(console, "[2/6]", "levels given, no search" if reused is None else "levels reused, no search")
    if reused is not None:
        mild, aggressive = reused.mild, reused.aggressive
        _log(console, "[3/6]", f"reusing the fine-tuned levels of {reused.directory}: mild {cfg.mild:.2f}, "
             f"aggressive {cfg.aggressive:.2f} ({_epochs_text(cfg)})")
    elif cfg.mild is None or cfg.aggressive is None:
        _log(console, "[2/6]", "searching pruning levels (short fine-tunes, scored by Eyeriss energy)")
        cfg.mild, cfg.aggressive, candidates = search_levels(
            original, x, train, calib, orig_calib_correct, orig_energy, cfg, console)
        for level in candidates:  # the trade-off plot shows them as the search left them
            level.test_accuracy = evaluate(level.model, test)
        mild, aggressive = refine_levels(original, x, train, calib, orig_calib_correct, orig_energy, candidates,
                                         cfg, console)
    else:
        _log(console, "[3/6]", f"pruning and fine-tuning: mild {cfg.mild:.2f}, aggressive {cfg.aggressive:.2f} "
             f"({_epochs_text(cfg)}, distilled from the original)")
        mild, aggressive = (run_level_job(original, x, train, cfg, job) for job in fixed_level_jobs(cfg))
    mild_program = energy_of(mild, x, cfg, sparsity_images)
    aggr_program = energy_of(aggressive, x, cfg, sparsity_images)

    doing = "training and calibrating" if cfg.selector == "learned" else "calibrating"
    _log(console, "[4/6]", f"selector '{cfg.selector}': {doing} on {len(calib):,} images")
    from prunec.dynamic import compile_dynamic

    costs = {"base": per_inference(aggr_program), "mild": per_inference(mild_program),
             "original": orig_energy}
    compiled = compile_dynamic(original, aggressive, mild, calib, selector=cfg.selector,
                               max_accuracy_drop=cfg.max_accuracy_drop, mild_rate=cfg.mild_rate,
                               costs=costs, preprocess=info.preprocess, seed=cfg.seed, confidence=cfg.confidence)
    dyn = compiled.model
    dyn_program = energy_of(dyn, x, cfg, sparsity_images)
    by_role = dyn_program.energy_by_role()
    costs["base"] = sum(v for k, v in by_role.items() if k != "mild")
    costs["mild"] = by_role.get("mild", costs["mild"])
    compiled.costs = costs
    # the sweep was costed before the selector was lowered: add its energy (shares and accuracies stand)
    compiled.sweep = [_recost(p, costs) for p in compiled.sweep]
    if compiled.chosen is not None:
        compiled.chosen = _recost(compiled.chosen, costs)

    _log(console, "[5/6]", "evaluating every variant on the test split")
    report = _evaluate_and_report(cfg, _describe_model(model_meta or {}, model), original, mild, aggressive,
                                  compiled, test, calib, orig_test_acc, orig_program, mild_program,
                                  aggr_program, dyn_program, candidates, x)
    if reused is not None:
        _note_reuse(report, reused)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    result = CompileResult(compiled, report, {"original": orig_program, "mild": mild_program,
                                              "aggressive": aggr_program, "dynamic": dyn_program})
    if output is not None:
        _log(console, "[6/6]", f"writing {output}")
        with atomic_directory(output, force) as staging:
            write_outputs(result, staging)
        result.output = Path(output)
    return result


def _hardware_info(hw: dict[str, Any]) -> dict[str, Any]:
    """The report's record of the hardware the energies were costed on (from the lowered IR)."""
    return {"name": str(hw.get("name", "?")), "energy_unit": str(hw.get("energy_unit", "normalized")),
            "energy_per_access": {k: float(v) for k, v in hw.get("energy_per_access", {}).items()},
            **hardware_timing(hw)}


def _note_reuse(report: dict[str, Any], reused: Any) -> None:
    """The report of a --reuse-levels run says where its networks were fine-tuned, and keeps the
    single-level points that run measured (they do not depend on the selector)."""
    source = reused.source
    # a chain of reuses still names the compile that fine-tuned the networks
    report["levels_from"] = source.get("levels_from") or {
        "directory": str(reused.directory), "command": source.get("command", ""), "created": source.get("created", "")}
    same_costs = all(source.get(k) == report[k] for k in ("target", "batch")) and \
        source.get("energy", {}).get("original") == report["energy"]["original"]
    if len(source.get("single_level", [])) > len(report["single_level"]) and same_costs:
        report["single_level"] = source["single_level"]
        report["notes"] += [n for n in source.get("notes", []) if n.startswith("Single-level points")]
    for role, level in report["levels"].items():
        if "fine_tune_epochs" not in source.get("levels", {}).get(role, {}):
            del level["fine_tune_epochs"]  # unknown, not zero
    report["notes"].append(f"The mild and aggressive networks were reused from {reused.directory} "
                           f"(fine-tuned by: {report['levels_from']['command'] or 'an earlier compile'}).")


def _recost(point: Any, costs: dict[str, float]) -> Any:
    import dataclasses

    energy = costs["base"] + point.mild_share * costs["mild"]
    return dataclasses.replace(point, expected_energy=energy, energy_reduction=1 - energy / costs["original"])


def _prepare_checkpoint_dir(directory: str, output: str | None) -> None:
    from prunec.outdir import ensure_writable_directory

    ckpt = Path(directory).resolve()
    if output is not None and (ckpt == Path(output).resolve() or Path(output).resolve() in ckpt.parents):
        raise UserError(f"--checkpoint-dir {directory} lies in the output directory {output}, which a "
                        "compile replaces as a whole; keep the checkpoints elsewhere")
    ensure_writable_directory(ckpt, f"cannot use --checkpoint-dir {directory}")


def _check_arguments(model: Any, data: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"prunec.compile takes an nn.Module, got {type(model).__name__}; load a checkpoint, state "
                        f"dict or zoo:NAME first with prunec.load(...)")
    if not isinstance(data, (str, os.PathLike, Split)):
        raise TypeError(f"data must be a data set name, a PATH.npz or image folder, or a prunec.data.Split; got "
                        f"{type(data).__name__}")


def _config(data: str | Split, model_meta: dict[str, Any] | None, options: dict[str, Any]) -> CompileConfig:
    """The checked configuration of a compile of a model (``model_meta``) on ``data``."""
    data = os.fspath(data) if isinstance(data, os.PathLike) else data
    options, normalization_source = _model_normalization(options, data, model_meta)
    if options.get("mild_rate") is not None and "max_accuracy_drop" not in options:
        options = {**options, "max_accuracy_drop": None}  # a mild rate replaces the default budget, as on the CLI
    cfg = CompileConfig(data=data if isinstance(data, str) else data.info.name, **options)
    _validate(cfg, normalization_source)
    return cfg


def _start(model: nn.Module, cfg: CompileConfig) -> tuple[Split, Split, Split, torch.Tensor, fx.GraphModule]:
    """Seeds, the train / calibration / test splits, an example input and the traced original."""
    from prunec.frontend import trace

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    train, calib, test = _splits(cfg)
    x = test.x[:1].clone()
    # a batch of two as well: a model can accept one image and not a batch (a view of the wrong size)
    _check_model_fits(model, test.x[:2], test.info.num_classes)  # leaves the model in eval mode (shared by the trace)
    _check_calibration_size(cfg.selector, len(calib))
    return train, calib, test, x, trace(model, x, leaf_modules=cfg.leaf_modules)


def _check_calibration_size(selector: str, images: int) -> None:
    """Before any fine-tuning: the learned selector is cross-fitted on the calibration images."""
    from prunec.dynamic import SELECTOR_FOLDS

    if selector == "learned" and images < SELECTOR_FOLDS:
        raise UserError(f"the learned selector is fitted and thresholded in {SELECTOR_FOLDS} folds of the calibration "
                        f"images and needs at least {SELECTOR_FOLDS}, the data set has {images}: give more "
                        "calibration images (x_calibration/y_calibration in a .npz, calibration/<class>/ in an image "
                        "folder, or more training images), or "
                        "--selector max-softmax")


def _model_normalization(options: dict[str, Any], data: str | Split, meta: dict[str, Any] | None
                         ) -> tuple[dict[str, Any], str | None]:
    """The input normalization the model takes, and where it came from (for error messages).

    Given ``mean``/``std`` win; else a :class:`Split` passed as ``data`` brings its own; else a
    prunec checkpoint's recorded ``preprocess``; else (None) the data set's.
    """
    if options.get("mean") is not None or options.get("std") is not None:
        return options, None
    if isinstance(data, Split):
        return {**options, "mean": data.info.mean, "std": data.info.std}, "the data split's"
    from prunec.data import RECORDED_NORMALIZATION, recorded_normalization

    if (recorded := recorded_normalization(meta)) is not None:
        return {**options, "mean": recorded[0], "std": recorded[1]}, RECORDED_NORMALIZATION
    return options, None


def _validate(cfg: CompileConfig, normalization_source: str | None = None) -> None:
    numeric = (float, int, float | None, int | None)
    for name, hint in typing.get_type_hints(CompileConfig).items():  # the Python API takes anything
        value = getattr(cfg, name)
        if hint in numeric and value is not None and not is_number(value):
            raise UserError(f"{name} must be a number, got {value!r}")
    cfg.seed = check_seed(cfg.seed)  # 2.0 is seed 2: numpy takes the int, not the float
    if cfg.sparsity_samples < 1 or cfg.batch_size < 1:
        raise UserError("sparsity_samples and batch_size must be at least 1")
    for name in ("mild", "aggressive"):
        value = getattr(cfg, name)
        if value is not None and not 0 <= value < 1:
            raise UserError(f"--{name} must be a pruning ratio in [0, 1), got {value}")
    if (cfg.mild is None) != (cfg.aggressive is None):
        raise UserError("give both --mild and --aggressive, or neither (prunec then searches for them)")
    if cfg.mild is not None and cfg.aggressive is not None and cfg.mild >= cfg.aggressive:
        raise UserError(f"--mild ({cfg.mild}) must prune less than --aggressive ({cfg.aggressive})")
    if cfg.selector not in ("learned", "max-softmax", "margin", "entropy"):
        raise UserError(f"unknown selector {cfg.selector!r}; choose learned, max-softmax, margin or entropy")
    if cfg.max_accuracy_drop is not None and not 0 <= cfg.max_accuracy_drop < float("inf"):  # NaN fails
        raise UserError(f"--max-accuracy-drop must be a finite number of points >= 0, got {cfg.max_accuracy_drop}")
    if cfg.mild_rate is not None and not 0 <= cfg.mild_rate <= 1:
        raise UserError("--mild-rate must be in [0, 1]")
    epochs = (cfg.epochs, cfg.aggressive_finetune_epochs, cfg.search_epochs)
    if not (cfg.epochs >= 0 and cfg.aggressive_finetune_epochs >= 0 and cfg.search_epochs > 0
            and all(math.isfinite(e) for e in epochs)):  # NaN fails too
        raise UserError("--epochs and --aggressive-epochs must be finite and >= 0, and --search-epochs finite and > 0")
    if cfg.batch < 1:
        raise UserError("--batch must be at least 1")
    if cfg.train_samples is not None and cfg.train_samples < 1:
        raise UserError("--train-samples must be a positive number of images")
    if not 0 < cfg.lr < math.inf:
        raise UserError("--lr must be a positive finite number")
    if cfg.search_ratios is not None:
        ratios = cfg.search_ratios
        if (not isinstance(ratios, (list, tuple)) or not ratios
                or not all(is_number(r) and 0 < r < 1 for r in ratios) or len(set(ratios)) < len(ratios)):
            shown = " ".join(str(r) for r in ratios) if isinstance(ratios, (list, tuple)) else repr(ratios)
            raise UserError(f"--search-ratios must be distinct pruning ratios in (0, 1), got {shown or 'none'}")
        if cfg.mild is not None or cfg.reuse_levels:
            raise UserError("--search-ratios are the level search's candidates: give them without --mild/--aggressive "
                            "and without --reuse-levels (which takes DIR's levels and searches none)")
    if cfg.aggressive_method is not None and cfg.mild is None:
        raise UserError("--aggressive-method needs explicit --mild/--aggressive levels (the search uses --method)")
    if cfg.max_accuracy_drop is not None and cfg.mild_rate is not None:
        raise UserError("give --max-accuracy-drop or --mild-rate, not both")
    if cfg.confidence is not None:
        if not 0 < cfg.confidence < 1:  # NaN fails
            hint = f" (did you mean {cfg.confidence / 100:g}?)" if 1 < cfg.confidence < 100 else ""
            raise UserError(f"--confidence must be a probability strictly between 0 and 1, got {cfg.confidence:g}"
                            + hint)
        if cfg.max_accuracy_drop is None:
            raise UserError("--confidence bounds the --max-accuracy-drop budget; it does not apply to --mild-rate")
    from prunec.data import dataset_info, renormalized

    own = dataset_info(cfg.data)
    info = renormalized(own, cfg.mean, cfg.std, normalization_source)  # bad values fail here, before any work
    cfg.mean, cfg.std = info.mean, info.std
    if cfg.reuse_levels:  # before any work, not after the original's evaluation (the one check of its inputs)
        from prunec.reuse import check_same_normalization, read_source_report

        check_same_normalization(*read_source_report(cfg.reuse_levels), _normalization(info),
                                 recorded_default=_normalization(own))
    from prunec.pruning import resolve_pruner

    resolve_pruner(cfg.pruner)
    from prunec.backends import get_target

    get_target(cfg.target)


def _splits(cfg: CompileConfig) -> tuple[Split, Split, Split]:
    def split(name: str) -> Split:
        return load_split(cfg.data, name, cfg.data_root, mean=cfg.mean, std=cfg.std)

    train = split("train")
    if cfg.train_samples:
        train = train.subset(cfg.train_samples, seed=cfg.seed)
    return train, split("calibration"), split("test")


def _normalization(info: Any) -> dict[str, list[float]]:
    return {"mean": list(info.mean), "std": list(info.std)}


def _describe_model(meta: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``meta`` with the ``arch`` and ``source`` a report names the model by.

    A zoo net or prunec checkpoint knows its arch; a factory (``package.module:factory``)
    or a pickled / in-memory module is named by its factory or its class.
    """
    arch = meta.get("arch") or meta.get("factory") or type(model).__name__
    return {**meta, "arch": arch, "source": meta.get("source") or meta.get("factory") or arch}


def _check_model_fits(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - any failure here is a model/data mismatch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the model does not accept this data set's input (a batch of {len(x)} images shaped "
                        f"{tuple(x.shape[1:])}): {first}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != len(x):
        raise UserError("the model must return one (batch, classes) tensor of logits, one row per image")
    if out.shape[1] != num_classes:
        raise UserError(f"the model has {out.shape[-1]} outputs but the data set has {num_classes} classes "
                        f"(labels numbered 0..{num_classes - 1}); train it for this data set (or pass the matching "
                        "--data)")


# --------------------------------------------------------------------------- report


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100 * float((logits.argmax(1) == y).float().mean())


def _levels_energy(program: Any) -> dict[str, float]:
    ir = program.to_dict()
    per_batch = ir["totals"]["energy_by_level"]
    return {k: float(per_batch.get(k, 0.0)) / ir["batch"] for k in MEMORY_LEVELS}


def _layer_rows(program: Any, batch: int, with_role: bool) -> list[dict[str, Any]]:
    rows = []
    for layer in program.to_dict()["layers"]:
        energy = {k: float(v) / batch for k, v in layer.get("energy", {}).items()}
        row = {"name": layer["name"], "energy": energy}
        if with_role:
            row["role"] = layer.get("role")
        rows.append(row)
    return rows


def _evaluate_and_report(cfg, meta, original, mild, aggressive, compiled, test, calib, orig_test_acc,
                         orig_program, mild_program, aggr_program, dyn_program, candidates, x):
    from prunec.calibration import roc_auc
    from prunec.dynamic import calibration_scheme
    from prunec.summary import count_macs
    from prunec.training import predict

    dyn = compiled.model
    e_orig, e_mild, e_aggr = (per_inference(p) for p in (orig_program, mild_program, aggr_program))
    costs = compiled.costs
    logits_a, scores = dyn.scores(test.x)
    logits_m = predict(mild, test)
    correct_a, correct_m = logits_a.argmax(1) == test.y, logits_m.argmax(1) == test.y
    route = scores > dyn.threshold
    final = torch.where(route[:, None], logits_m, logits_a)
    dyn_acc = _acc(final, test.y)
    share = float(route.float().mean())
    dyn_program.routed_share = share  # ir.json's totals then hold the expected energy at it
    e_dyn = costs["base"] + share * costs["mild"]
    oracle_route = ~correct_a
    oracle_acc = 100 * float((correct_a | correct_m).float().mean())
    oracle_share = float(oracle_route.float().mean())
    test_points = [_at_threshold(p.threshold, scores, correct_a, correct_m, costs) for p in compiled.sweep]
    auc = roc_auc(scores.numpy(), (~correct_a).numpy()) if 0 < int((~correct_a).sum()) < len(test) else None

    single = [{"ratio": 0.0, "accuracy": orig_test_acc, "energy": e_orig}]
    for level in candidates:
        single.append({"ratio": level.ratio, "accuracy": level.test_accuracy,
                       "energy": level.energy, "fine_tune_epochs": cfg.search_epochs})
    single.sort(key=lambda r: r["ratio"])

    def _pt(p: Any) -> dict[str, float]:  # SweepPoint accuracies are fractions
        return {"threshold": float(p.threshold), "mild_share": float(p.mild_share),
                "accuracy": 100 * float(p.accuracy), "energy": float(p.expected_energy)}

    macs = {name: count_macs(m, x) for name, m in (("original", original), ("mild", mild),
                                                   ("aggressive", aggressive))}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("original", original),
                                                                           ("mild", mild),
                                                                           ("aggressive", aggressive))}
    reduction = 1 - e_dyn / e_orig
    drop = orig_test_acc - dyn_acc
    # the verdict (met or missed, and by how much) is report.verdict's, rendered from these numbers
    notes = [note] if (note := near_chance_note(orig_test_acc, test.info)) is not None else []
    if compiled.chosen is not None and not compiled.chosen.feasible:
        rule = ("met the accuracy constraint on calibration data" if cfg.confidence is None else
                f"had its accuracy drop bounded within the budget at {format_confidence(cfg.confidence)} "
                "confidence")
        notes.append(f"No threshold {rule}; every input goes to the mild network.")
    if cfg.gates_weights and _target_takes(cfg, "weight_sparsity"):
        notes.append("Zero weights are credited (gated MACs and a run-length compressed filter stream): an "
                     "Eyeriss v2-style assumption; the Eyeriss v1 chip gates only zero activations.")
    # a searched level keeps training from its search fine-tune (refine_levels), so it had both
    trained = {"mild": cfg.epochs + (cfg.search_epochs if candidates else 0.0) if cfg.mild else 0.0,
               "aggressive": cfg.aggressive_finetune_epochs + (cfg.search_epochs if candidates else 0.0)}
    if candidates:
        notes.append(f"Single-level points from the level search had {cfg.search_epochs:g}-epoch fine-tunes; "
                     f"the chosen mild and aggressive levels continued from theirs for {_epochs_text(cfg)} "
                     f"({trained['mild']:g} and {trained['aggressive']:g} epochs in all).")
    by_role = dyn_program.energy_by_role()
    report = {
        "schema_version": 1, "prunec_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": cfg.command, "seed": cfg.seed,
        "model": {"source": meta["source"], "arch": meta["arch"],
                  "input_shape": list(x.shape), "num_classes": test.info.num_classes,
                  "params": params["original"], "macs": macs["original"]},
        "data": {"name": test.info.name, "calibration_size": len(calib), "test_size": len(test),
                 "normalization": _normalization(test.info), "calibration_sha256": fingerprint(calib),
                 "test_split_note": test.info.test_note or _split_note(test.info.name)},
        "target": cfg.target, "batch": cfg.batch, "hardware": _hardware_info(dyn_program.hardware),
        "levels": {"mild": {"ratio": cfg.mild, "method": cfg.method, "params": params["mild"],
                            "macs": macs["mild"], "fine_tune_epochs": trained["mild"]},
                   "aggressive": {"ratio": cfg.aggressive, "method": cfg.aggressive_method or cfg.method,
                                  "params": params["aggressive"], "macs": macs["aggressive"],
                                  "fine_tune_epochs": trained["aggressive"]}},
        "selector": {"kind": cfg.selector, "threshold": float(dyn.threshold), "taps": list(dyn.taps),
                     "auc": auc, "max_accuracy_drop": cfg.max_accuracy_drop,
                     "calibration": calibration_scheme(cfg.selector), "confidence": cfg.confidence,
                     **_drop_bound(compiled.chosen, cfg, bool(candidates))},
        "accuracy": {"original": orig_test_acc, "mild": _acc(logits_m, test.y),
                     "aggressive": _acc(logits_a, test.y), "dynamic": dyn_acc, "oracle": oracle_acc},
        "mild_share": share,
        "energy": {"original": e_orig, "mild": e_mild, "aggressive": e_aggr, "dynamic": e_dyn,
                   "by_role": {r: float(by_role.get(r, 0.0)) for r in ("trunk", "head", "selector", "mild")},
                   "by_level": {"original": _levels_energy(orig_program),
                                "dynamic": _dynamic_levels(dyn_program, share)}},
        "energy_reduction": reduction, "accuracy_drop": drop,
        "sweep": [_pt(p) for p in compiled.sweep], "test_sweep": test_points,
        "single_level": single,
        "oracle": {"accuracy": oracle_acc, "energy": costs["base"] + oracle_share * costs["mild"],
                   "mild_share": oracle_share},
        **_latency({"original": orig_program, "mild": mild_program, "aggressive": aggr_program,
                    "dynamic": dyn_program}, share),
        "layers": {"original": _layer_rows(orig_program, cfg.batch, False),
                   "dynamic": _layer_rows(dyn_program, cfg.batch, True)},
        "files": {"model_dir": "model", "onnx": "model.onnx", "ir": "ir.json", "ir_original": "ir_original.json"},
        "notes": notes, "wall_seconds": 0.0,
    }
    return report


def _drop_bound(chosen: Any, cfg: CompileConfig, levels_searched: bool) -> dict[str, Any]:
    """``{"drop_bound": ...}`` of the chosen threshold, or nothing where no budget applies."""
    from prunec.accuracy_bound import REPORT_CONFIDENCE, caveats, point_bound

    if chosen is None or cfg.max_accuracy_drop is None:
        return {}
    confidence = cfg.confidence if cfg.confidence is not None else REPORT_CONFIDENCE
    bound = point_bound(chosen, confidence)
    if bound != bound:
        return {}
    return {"drop_bound": {"confidence": confidence, "points": bound, "met_budget": bool(chosen.feasible),
                           "caveats": caveats(cfg.selector, levels_searched)}}


def _at_threshold(threshold: float, scores: torch.Tensor, correct_a: torch.Tensor, correct_m: torch.Tensor,
                  costs: dict[str, float]) -> dict[str, float]:
    """A calibration threshold applied to the test split: what a deployed model would do."""
    route = scores > threshold
    share = float(route.float().mean())
    return {"threshold": float(threshold), "mild_share": share,
            "accuracy": 100 * float(torch.where(route, correct_m, correct_a).float().mean()),
            "energy": costs["base"] + share * costs["mild"]}


def _latency(programs: dict[str, Any], share: float) -> dict[str, Any]:
    """``{"latency_ms": ...}`` of the four lowered programs; nothing where the target names no clock."""
    by = {name: getattr(p, "latency_ms_by_role", lambda: None)() for name, p in programs.items()}
    if any(v is None for v in by.values()):
        return {}
    return {"latency_ms": latency_record(*(sum(by[n].values()) for n in ("original", "mild", "aggressive")),
                                         by["dynamic"], share)}


def latency_record(original: float, mild: float, aggressive: float, dynamic_by_role: dict[str, float],
                   share: float) -> dict[str, Any]:
    """report.json's ``latency_ms``: each network's processing latency per batch, the dynamic model's by
    role, its expectation at the routed share and its worst case (an input sent to mild waits for every
    role)."""
    from prunec.backends.eyeriss.ir import routed_expectation

    roles = {r: float(dynamic_by_role.get(r, 0.0)) for r in ROLES}
    return {"original": float(original), "mild": float(mild), "aggressive": float(aggressive), "by_role": roles,
            "dynamic_expected": routed_expectation(dynamic_by_role, share),
            "dynamic_worst": routed_expectation(dynamic_by_role, 1.0)}


def hardware_timing(hw: dict[str, Any]) -> dict[str, float]:
    """What the latencies depend on, from an IR's hardware record: its clock and DRAM bandwidth."""
    return {k: float(hw[k]) for k in ("clock_hz", "dram_bandwidth_bytes_per_s") if hw.get(k)}


def _dynamic_levels(program: Any, share: float) -> dict[str, float]:
    """Per-memory-level energy per inference of the dynamic model, mild weighted by its share."""
    out = dict.fromkeys(MEMORY_LEVELS, 0.0)
    batch = program.to_dict()["batch"]
    for layer in program.to_dict()["layers"]:
        weight = share if layer.get("role") == "mild" else 1.0
        for k in out:
            out[k] += weight * float(layer.get("energy", {}).get(k, 0.0)) / batch
    return out


def _split_note(name: str) -> str:
    return {"cifar10": "CIFAR-10, 5k held-out split of the training set (images 45,000-49,999)",
            "fashion-mnist": "Fashion-MNIST official 10k test set"}.get(name, name)


def write_outputs(result: CompileResult, directory: Path) -> None:
    """Everything a compile run leaves: model/, model.onnx, ir.json (the dynamic model) and ir_original.json
    (the original, to cost both again on other hardware), report.{json,md}, plots."""
    import json

    from prunec.artifact import save_compiled
    from prunec.export import export_onnx_if
    from prunec.interrupts import deferring_interrupts
    from prunec.report import render_all, save_report

    with deferring_interrupts():  # torch.export / ONNX: a Ctrl-C waits for them (raised inside, it can crash)
        save_compiled(result.compiled, directory / "model")
        export_onnx_if(result.compiled, directory / "model.onnx")
    for name, program in (("ir.json", "dynamic"), ("ir_original.json", "original")):
        (directory / name).write_text(json.dumps(result.programs[program].to_dict(), indent=1) + "\n")
    save_report(result.report, directory)
    render_all(directory)


__all__ = ["compile", "CompileConfig", "CompileResult", "search_levels", "write_outputs", "LevelJob",
           "fixed_level_jobs", "finetune_levels"]
