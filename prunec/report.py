"""The report of ``prunec compile``: data first, views second.

``report.json`` is the one record of a run (schema below, versioned by
:data:`SCHEMA_VERSION`); the rich summary, ``report.md`` and the two PNG plots are all
rendered from it, so ``prunec report DIR`` can redraw them later without the model.

The schema is written once, as TypedDicts, and :func:`validate_report` walks those same
definitions; so the documentation and the check cannot drift apart. Numbers are:

* accuracy in percent on the test split, accuracy drop in percentage points;
* energy per inference in normalised units (1 = the energy of one MAC, Eyeriss ISCA 2016
  costs), from the same backend at the same batch size for every variant;
* shares (``mild_share``, ``energy_reduction``) as fractions in 0..1.

Per-layer energies (``layers``) are per inference and *unweighted*: a mild-network layer
carries the energy it costs when it runs. The dynamic totals (``energy.dynamic``,
``energy.by_level.dynamic``) are the expectation ``E(trunk)+E(head)+E(selector)+p·E(mild)``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import numpy as np

from prunec.errors import UserError
from prunec.outdir import write_atomic, write_atomic_files
from prunec.terminal import make_console

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 1
REPORT_FILE = "report.json"
MARKDOWN_FILE = "report.md"
BREAKDOWN_PLOT = "energy_breakdown.png"
TRADEOFF_PLOT = "tradeoff.png"

#: The project's target: at least this energy reduction against the original network ...
TARGET_ENERGY_REDUCTION = 0.70
#: ... at no more than this accuracy loss, in percentage points.
TARGET_MAX_ACCURACY_DROP = 2.0
#: What the TODAES 2021 paper reports on CIFAR-10 (~70 % at ~3 pts): the bar to beat.
PAPER_ENERGY_REDUCTION = 0.70
PAPER_ACCURACY_DROP = 3.0

MEMORY_LEVELS = ("mac", "rf", "array", "glb", "dram", "static")
LEVEL_LABELS = {"mac": "MAC", "rf": "register file", "array": "inter-PE array",
                "glb": "global buffer", "dram": "DRAM",
                "static": "PE clock and leakage (all PEs, conv/FC cycles)"}
ROLES = ("trunk", "head", "selector", "mild")
VARIANTS = ("original", "mild", "aggressive", "dynamic", "oracle")

# Relative tolerance of the cross-field checks: loose enough for rounding in the
# pipeline, tight enough to catch a forgotten ``p·`` or a mixed-up batch size.
_REL_TOL = 5e-3


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Range:
    """Bounds a number must respect; attached to a type with ``Annotated``."""

    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False

    def check(self, value: float, path: str) -> None:
        if self.lo is not None and value < self.lo:
            raise _invalid(path, f"must be >= {self.lo:g}, got {value!r}")
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            op = "<" if self.hi_open else "<="
            raise _invalid(path, f"must be {op} {self.hi:g}, got {value!r}")


Percent = Annotated[float, Range(0.0, 100.0)]
Share = Annotated[float, Range(0.0, 1.0)]
Energy = Annotated[float, Range(0.0)]
Count = Annotated[int, Range(0)]
Millis = Annotated[float, Range(0.0)]
PruneRatio = Annotated[float, Range(0.0, 1.0, hi_open=True)]
Role = Literal["trunk", "head", "selector", "mild"]


class ModelInfo(TypedDict):
    source: str  # what the user passed (zoo:NAME, a path, module:factory)
    arch: str
    input_shape: list[Annotated[int, Range(1)]]
    num_classes: Annotated[int, Range(1)]
    params: Count
    macs: Count


class Normalization(TypedDict):
    """Per channel, on the 0-1 pixel scale: the model sees (pixel - mean) / std."""

    mean: list[float]
    std: list[Annotated[float, Range(1e-6)]]  # prunec.data.MIN_STD


class _DataRequired(TypedDict):
    name: str
    calibration_size: Count
    test_size: Count
    test_split_note: str  # e.g. "CIFAR-10, 5k held-out split of the training set"


class DataInfo(_DataRequired, total=False):
    # absent in reports made before prunec recorded it (those used the data set's own)
    normalization: Normalization
    # sha256 of the calibration images and labels as the model reads them (prunec.data.fingerprint):
    # two image folders of one name are told apart by it; absent in reports made before it was recorded
    calibration_sha256: str


class _PruneLevelRequired(TypedDict):
    ratio: PruneRatio
    method: str
    params: Count
    macs: Count


class PruneLevel(_PruneLevelRequired, total=False):
    # absent when unknown: a --reuse-levels run from a report made before it was recorded
    fine_tune_epochs: Annotated[float, Range(0.0)]


class Levels(TypedDict):
    mild: PruneLevel
    aggressive: PruneLevel


class _SelectorRequired(TypedDict):
    kind: str
    threshold: float
    taps: list[str]
    auc: Annotated[float, Range(0.0, 1.0)] | None
    max_accuracy_drop: float | None  # the calibration budget the threshold was chosen for


class _DropBoundRequired(TypedDict):
    confidence: Annotated[float, Range(0.0, 1.0)]
    points: float  # percentage points below the original, on new images drawn like the calibration ones


class DropBound(_DropBoundRequired, total=False):
    """An upper confidence bound on the accuracy drop at the chosen threshold (prunec.accuracy_bound)."""

    caveats: list[str]  # why the bound is approximate (empty: exact); absent in reports before it was recorded
    met_budget: bool  # False: no threshold met the budget by its rule, every input goes to mild


class SelectorInfo(_SelectorRequired, total=False):
    calibration: str  # which scores the threshold was chosen on (absent: a half split, older reports)
    confidence: Annotated[float, Range(0.0, 1.0)] | None  # the budget held for the bound at it (None: estimate)
    drop_bound: DropBound  # absent in older reports and for a --mild-rate threshold


class LevelsFrom(TypedDict):
    """Where a ``--reuse-levels`` run took its fine-tuned networks from."""

    directory: str
    command: str
    created: str


class Accuracy(TypedDict):
    original: Percent
    mild: Percent
    aggressive: Percent
    dynamic: Percent
    oracle: Percent


class EnergyByRole(TypedDict):
    trunk: Energy
    head: Energy
    selector: Energy
    mild: Energy  # the full (unweighted) energy of the mild network


class LatencyByRole(TypedDict):
    trunk: Millis
    head: Millis
    selector: Millis
    mild: Millis  # when it runs


class Latency(TypedDict):
    """Processing latency in ms of one batch at the hardware's clock, layers one after another."""

    original: Millis
    mild: Millis
    aggressive: Millis
    by_role: LatencyByRole
    dynamic_expected: Millis  # trunk + head + selector + mild_share * mild
    dynamic_worst: Millis  # an input sent to mild: trunk + head + selector + mild


class EnergyByMemoryLevel(TypedDict):
    mac: Energy
    rf: Energy
    array: Energy
    glb: Energy
    dram: Energy
    static: Energy  # PE clock and leakage: one of MEMORY_LEVELS, so the views and the sums need it


class EnergyByVariantLevel(TypedDict):
    original: EnergyByMemoryLevel
    dynamic: EnergyByMemoryLevel  # expected, i.e. mild weighted by mild_share


class EnergyInfo(TypedDict):
    original: Energy
    mild: Energy
    aggressive: Energy
    dynamic: Energy
    by_role: EnergyByRole
    by_level: EnergyByVariantLevel


class SweepPoint(TypedDict):
    threshold: float
    mild_share: Share
    accuracy: Percent
    energy: Energy  # expected energy per inference at this threshold


class SingleLevelPoint(TypedDict):
    ratio: PruneRatio
    accuracy: Percent
    energy: Energy


class OracleInfo(TypedDict):
    accuracy: Percent
    energy: Energy
    mild_share: Share


class LayerEnergy(EnergyByMemoryLevel):
    total: Energy


class LayerRecord(TypedDict):
    name: str
    energy: LayerEnergy


class DynamicLayerRecord(TypedDict):
    name: str
    role: Role
    energy: LayerEnergy  # unweighted: what the layer costs when it runs


class Layers(TypedDict):
    original: list[LayerRecord]
    dynamic: list[DynamicLayerRecord]


class _FilesRequired(TypedDict):
    model_dir: str
    onnx: str | None
    ir: str | None


class FilesInfo(_FilesRequired, total=False):
    ir_original: str | None  # the original network's IR; reports written before it existed lack it


class _ReportRequired(TypedDict):
    schema_version: int
    prunec_version: str
    created: str  # ISO 8601
    command: str
    seed: int | None
    model: ModelInfo
    data: DataInfo
    target: str
    batch: Annotated[int, Range(1)]
    levels: Levels
    selector: SelectorInfo
    accuracy: Accuracy
    mild_share: Share
    energy: EnergyInfo
    energy_reduction: Annotated[float, Range(hi=1.0)]
    accuracy_drop: Annotated[float, Range(-100.0, 100.0)]
    sweep: list[SweepPoint]
    single_level: list[SingleLevelPoint]
    oracle: OracleInfo
    layers: Layers
    files: FilesInfo
    notes: list[str]
    wall_seconds: Energy


class EnergyPerAccess(TypedDict, total=False):
    mac: Annotated[float, Range(0.0)]
    rf: Annotated[float, Range(0.0)]
    array: Annotated[float, Range(0.0)]
    glb: Annotated[float, Range(0.0)]
    dram: Annotated[float, Range(0.0)]
    static_per_pe_cycle: Annotated[float, Range(0.0)]


class _HardwareInfoRequired(TypedDict):
    name: str
    energy_unit: str  # "normalized" (one MAC = 1) or "pJ"
    energy_per_access: EnergyPerAccess


class HardwareInfo(_HardwareInfoRequired, total=False):
    """What the energies were costed on: the target's hardware description (``--hw`` or its default)."""

    # what the latencies depend on; absent in reports before they were recorded
    clock_hz: Annotated[float, Range(0.0)]
    dram_bandwidth_bytes_per_s: Annotated[float, Range(0.0)]


class Report(_ReportRequired, total=False):
    """The whole of ``report.json``. Keys not listed here are kept and ignored."""

    hardware: HardwareInfo  # absent in reports made before prunec recorded it (those used Eyeriss v1)

    test_sweep: list[SweepPoint]  # the calibration thresholds evaluated on the test split
    levels_from: LevelsFrom  # set by --reuse-levels
    latency_ms: Latency  # absent in reports before it was recorded and for targets that name no clock


# ----------------------------------------------------------------------- validation


def _invalid(path: str, problem: str) -> UserError:
    return UserError(f"invalid report: field '{path}' {problem}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(value: Any, tp: Any, path: str) -> None:
    """Check ``value`` against the annotation ``tp``; raise UserError naming ``path``."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        _check(value, base, path)
        for m in meta:
            if isinstance(m, Range):
                m.check(value, path)
        return
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in get_args(tp):
            return
        options = [a for a in get_args(tp) if a is not type(None)]
        _check(value, options[0], path)  # the schema only uses ``X | None``
        return
    if origin is list:
        if not isinstance(value, list):
            raise _invalid(path, f"must be a list, got {_describe(value)}")
        (item_tp,) = get_args(tp)
        for i, item in enumerate(value):
            _check(item, item_tp, f"{path}[{i}]")
        return
    if origin is Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise _invalid(path, f"must be one of {allowed}, got {_describe(value)}")
        return
    if is_typeddict(tp):
        if not isinstance(value, dict):
            raise _invalid(path, f"must be an object, got {_describe(value)}")
        for key, sub in get_type_hints(tp, include_extras=True).items():
            if key not in value:
                if key in tp.__required_keys__:
                    raise UserError(f"invalid report: missing field '{_join(path, key)}'")
                continue
            _check(value[key], sub, _join(path, key))
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(path, f"must be a number, got {_describe(value)}")
        if isinstance(value, int) and abs(value) > sys.float_info.max:  # math.isfinite would overflow
            raise _invalid(path, f"must be a finite number, got an integer of {len(str(abs(value)))} digits")
        if not math.isfinite(value):
            raise _invalid(path, f"must be a finite number, got {value!r}")
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(path, f"must be an integer, got {_describe(value)}")
        return
    if tp is str:
        if not isinstance(value, str):
            raise _invalid(path, f"must be a string, got {_describe(value)}")
        return
    if tp is bool:
        if not isinstance(value, bool):
            raise _invalid(path, f"must be true or false, got {_describe(value)}")
        return
    raise TypeError(f"report schema uses an unsupported type at {path}: {tp!r}")  # a bug here


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(scale), 1e-12)


def _check_consistency(d: dict[str, Any]) -> None:
    """The identities DESIGN.md defines for energy (and their like for latency); a report that breaks one
    would mislead its reader."""
    e, acc = d["energy"], d["accuracy"]
    if e["original"] <= 0:
        raise _invalid("energy.original", "must be > 0: every relative number divides by it")
    role = e["by_role"]
    expected = role["trunk"] + role["head"] + role["selector"] + d["mild_share"] * role["mild"]
    if not _close(e["dynamic"], expected, max(e["dynamic"], expected)):
        raise _invalid("energy.dynamic", f"is {e['dynamic']:.6g} but trunk + head + selector + "
                       f"mild_share * mild is {expected:.6g}")
    reduction = 1.0 - e["dynamic"] / e["original"]
    if abs(d["energy_reduction"] - reduction) > _REL_TOL:
        raise _invalid("energy_reduction", f"is {d['energy_reduction']:.4f} but "
                       f"1 - energy.dynamic/energy.original is {reduction:.4f}")
    drop = acc["original"] - acc["dynamic"]
    if abs(d["accuracy_drop"] - drop) > 0.05:
        raise _invalid("accuracy_drop", f"is {d['accuracy_drop']:.3f} but accuracy.original - "
                       f"accuracy.dynamic is {drop:.3f}")
    if (lat := d.get("latency_ms")) is not None:
        if lat["original"] <= 0:
            raise _invalid("latency_ms.original", "must be > 0: the latencies are compared with it")
        r = lat["by_role"]
        base = r["trunk"] + r["head"] + r["selector"]
        for key, share in (("dynamic_expected", d["mild_share"]), ("dynamic_worst", 1.0)):
            if not _close(lat[key], base + share * r["mild"], max(lat[key], base + share * r["mild"])):
                raise _invalid(f"latency_ms.{key}", f"is {lat[key]:.6g} but trunk + head + selector + "
                               f"{'mild_share * ' if share < 1 else ''}mild is {base + share * r['mild']:.6g}")
    for variant in ("original", "dynamic"):
        total = sum(e["by_level"][variant][lvl] for lvl in MEMORY_LEVELS)
        if not _close(total, e[variant], max(total, e[variant])):
            raise _invalid(f"energy.by_level.{variant}", f"sums to {total:.6g} but "
                           f"energy.{variant} is {e[variant]:.6g}")


def validate_report(d: Any) -> dict[str, Any]:
    """Check ``d`` against schema version 1 and the energy/accuracy identities.

    Returns ``d`` itself so callers can write ``report = validate_report(json.load(fh))``.
    Raises :class:`UserError` naming the first missing or bad field.
    """
    if not isinstance(d, dict):
        raise UserError(f"invalid report: expected a JSON object, got {type(d).__name__}")
    if "schema_version" not in d:
        raise UserError("invalid report: missing field 'schema_version'")
    version = d["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _invalid("schema_version", f"must be a positive integer, got {_describe(version)}")
    if version > SCHEMA_VERSION:
        raise UserError(f"report has schema_version {version}, newer than this prunec understands "
                        f"({SCHEMA_VERSION}); upgrade prunec to read it")
    _check(d, Report, "")
    _check_consistency(d)
    return d


# ---------------------------------------------------------------------------- files


def _report_path(path_or_dir: str | os.PathLike[str]) -> Path:
    path = Path(path_or_dir)
    return path / REPORT_FILE if path.is_dir() else path


def load_report(path_or_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``report.json`` (given the file or the directory holding it)."""
    path = _report_path(path_or_dir)
    if not Path(path_or_dir).exists():
        raise UserError(f"{path_or_dir} does not exist")
    if not path.is_file():
        raise UserError(f"no {REPORT_FILE} in {path.parent}: is it a `prunec compile` output "
                        "directory?")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{path} nests too deeply to be a prunec report") from None
    try:
        return validate_report(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def save_report(d: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Validate ``d`` and write it as ``directory/report.json`` atomically; return the path."""
    validate_report(d)
    text = json.dumps(d, indent=2, allow_nan=False) + "\n"
    return write_atomic(Path(directory) / REPORT_FILE, text)


def render_all(directory: str | os.PathLike[str]) -> list[Path]:
    """(Re)write report.md and both plots from ``directory/report.json``; return their paths."""
    from prunec import plots

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    d = load_report(directory)
    # all three are rendered before any is written, and replaced as a set: a failure keeps the old views
    return write_atomic_files({directory / MARKDOWN_FILE: render_markdown(d),
                               directory / BREAKDOWN_PLOT: plots.png(plots.energy_breakdown_figure(d)),
                               directory / TRADEOFF_PLOT: plots.png(plots.tradeoff_figure(d))})


# -------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class SingleLevelRival:
    """The cheapest single network (no selector) at least as accurate as the dynamic model on test."""

    name: str  # "original", "mild", "aggressive" or "single level r=0.60"
    energy_ratio: float  # the dynamic model's energy / this network's


@dataclass(frozen=True)
class Verdict:
    """How a run stands against the project target (at least 70 % less energy than the original, at
    most 2 points lost, and less energy than any single pruning level as accurate) and the paper."""

    energy_reduction: float  # fraction
    accuracy_drop: float  # points
    rival: SingleLevelRival | None = None  # None: the report holds no single level to compare with

    @property
    def energy_met(self) -> bool:
        return self.energy_reduction >= TARGET_ENERGY_REDUCTION - 1e-9

    @property
    def accuracy_met(self) -> bool:
        return self.accuracy_drop <= TARGET_MAX_ACCURACY_DROP + 1e-9

    @property
    def beats_single_level(self) -> bool:
        return self.rival is None or self.rival.energy_ratio < 1

    @property
    def met(self) -> bool:
        return self.energy_met and self.accuracy_met and self.beats_single_level

    def _single_level_clause(self) -> str:
        r = self.rival
        if r is None:
            return ""
        if r.energy_ratio < 1:
            return (f"; {r.energy_ratio:.2f}x the energy of the cheapest single network as accurate "
                    f"({r.name}), as the target asks")
        return (f"; but {r.energy_ratio:.3f}x the energy of the {r.name} network alone, which is as accurate: "
                "the selector does not pay for itself")

    def _energy_clause(self) -> str:
        pct, target_pct = self.energy_reduction * 100, TARGET_ENERGY_REDUCTION * 100
        gap, n = pct - target_pct, decimals_apart(pct, target_pct, 1)
        shown, target = f"energy reduction {pct:.{n}f}%", f"≥ {TARGET_ENERGY_REDUCTION:.0%}"
        if self.energy_met:
            return f"{shown} meets {target} ({max(gap, 0.0):.{n}f} points to spare)"
        return f"{shown} misses {target} by {-gap:.{n}f} points"

    def _accuracy_clause(self) -> str:
        gap = TARGET_MAX_ACCURACY_DROP - self.accuracy_drop
        n = decimals_apart(self.accuracy_drop, TARGET_MAX_ACCURACY_DROP, 2)
        budget = f"≤ {TARGET_MAX_ACCURACY_DROP:.1f} pts"
        loss = _loss_phrase(self.accuracy_drop, n)
        if self.accuracy_met:
            return f"{loss} meets {budget} ({max(gap, 0.0):.{n}f} pts to spare)"
        return f"{loss} misses {budget} by {-gap:.{n}f} pts"

    def sentence(self) -> str:
        """One line: met or missed, and by how much on each axis."""
        head = "Target met" if self.met else "Target missed"
        return f"{head}: {self._energy_clause()}; {self._accuracy_clause()}{self._single_level_clause()}."

    def paper_sentence(self) -> str:
        de = (self.energy_reduction - PAPER_ENERGY_REDUCTION) * 100
        da = PAPER_ACCURACY_DROP - self.accuracy_drop
        better = de >= 0 and da >= 0
        worse = de <= 0 and da <= 0 and (de < 0 or da < 0)
        overall = "better than" if better else "worse than" if worse else "a different trade-off from"
        return (f"Against the paper (~{PAPER_ENERGY_REDUCTION:.0%} at ~{PAPER_ACCURACY_DROP:.0f} pts): "
                f"{abs(de):.1f} points {'more' if de >= 0 else 'less'} energy reduction and "
                f"{abs(da):.2f} pts {'less' if da >= 0 else 'more'} accuracy loss, i.e. {overall} "
                "the paper.")


def _loss_phrase(drop: float, decimals: int = 2) -> str:
    if drop < 0:
        return f"accuracy change +{-drop:.{decimals}f} pts (a gain)"
    return f"accuracy loss {drop:.{decimals}f} pts"


def decimals_apart(value: float, target: float, decimals: int) -> int:
    """The decimals that keep ``value`` visibly on its side of ``target`` (up to 6): a reduction of
    69.996 % must not read "70.0 % misses ≥ 70 % by 0.0 points"."""
    while decimals < 6 and value != target and round(value, decimals) == round(target, decimals):
        decimals += 1
    return decimals


def verdict(d: dict[str, Any]) -> Verdict:
    """The report's verdict, from its energies and accuracies themselves: the stored
    ``energy_reduction``/``accuracy_drop`` restate them and pass validation within a tolerance."""
    e, acc = d["energy"], d["accuracy"]
    return Verdict(1.0 - float(e["dynamic"]) / float(e["original"]), float(acc["original"]) - float(acc["dynamic"]),
                   single_level_rival(d))


def single_level_rival(d: dict[str, Any]) -> SingleLevelRival | None:
    """The least-energy network of the report (original, mild, aggressive, the searched single
    levels) whose test accuracy is at least the dynamic model's; None without any."""
    cheapest = cheapest_network_as_accurate(d, d["accuracy"]["dynamic"])
    if cheapest is None:
        return None
    name, least = cheapest
    return SingleLevelRival(name, float(d["energy"]["dynamic"]) / least)


def cheapest_network_as_accurate(d: dict[str, Any], accuracy: float) -> tuple[str, float] | None:
    """Name and energy of the least-energy single network of the report (no selector) whose test
    accuracy is at least ``accuracy`` (%); None when none is."""
    acc, energy = d["accuracy"], d["energy"]
    networks = [(name, acc[name], energy[name]) for name in ("original", "mild", "aggressive")]
    networks += [(f"single level r={s['ratio']:.2f}", s["accuracy"], s["energy"])
                 for s in d.get("single_level", []) if s.get("ratio", 0) > 0]
    as_good = [(name, float(e)) for name, a, e in networks if a >= accuracy - 1e-9 and e > 0]
    return min(as_good, key=lambda n: n[1], default=None)


def in_target_region(d: dict[str, Any], accuracy: float, energy: float) -> bool:
    """Whether a point (accuracy %, energy) meets the target relative to ``d``'s original: its
    energy and accuracy budgets, and less energy than any single network of ``d`` as accurate."""
    e0, a0 = d["energy"]["original"], d["accuracy"]["original"]
    rival = cheapest_network_as_accurate(d, accuracy)
    return (energy <= (1 - TARGET_ENERGY_REDUCTION) * e0 + 1e-12
            and accuracy >= a0 - TARGET_MAX_ACCURACY_DROP - 1e-9
            and (rival is None or energy < rival[1]))


def reported_sweep(d: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The sweep the views show: the test-split one where the pipeline measured it."""
    if d.get("test_sweep"):
        return d["test_sweep"], "test"
    return d["sweep"], "calibration"


def chosen_index(sweep: Sequence[dict[str, Any]], threshold: float) -> int | None:
    """Index of the sweep point at the selector's chosen threshold (nearest one)."""
    if not sweep:
        return None
    return min(range(len(sweep)), key=lambda i: abs(sweep[i]["threshold"] - threshold))


# --------------------------------------------------------------------- formatting


def fmt_energy(x: float) -> str:
    """Normalised energy with an SI suffix: 4.12e7 -> '41.2 M'."""
    for scale, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def variant_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant (accuracy, energy, relative energy, share to mild) for every view."""
    e0, a0 = d["energy"]["original"], d["accuracy"]["original"]
    rows = []
    for name in VARIANTS:
        if name == "oracle":
            acc, energy, share = d["oracle"]["accuracy"], d["oracle"]["energy"], d["oracle"]["mild_share"]
        else:
            acc, energy = d["accuracy"][name], d["energy"][name]
            share = d["mild_share"] if name == "dynamic" else None
        rows.append({"variant": name, "accuracy": acc, "drop": a0 - acc, "energy": energy,
                     "relative": energy / e0 if e0 > 0 else float("nan"), "mild_share": share})
    return rows


_VARIANT_NOTES = {
    "original": "the unpruned network",
    "dynamic": "aggressive + selector, mild for the rejected inputs",
    "oracle": "perfect selector (bound)",
}


def _level_text(d: dict[str, Any], name: str) -> str:
    """What a pruning level removed: the ratio of channels asked for, and the parameters and MACs
    actually left (a layer loses input and output channels, about (1 - r)^2 of it is left; layers
    kept whole or coupled by residual adds and depthwise convolutions move it further)."""
    lvl, model = d["levels"][name], d["model"]
    kept = [f"{lvl[k] / model[k]:.0%} of the {what}" for k, what in (("params", "parameters"), ("macs", "MACs"))
            if model.get(k)]
    return f"pruned {lvl['ratio']:.0%} ({lvl['method']})" + (f", keeps {' and '.join(kept)}" if kept else "")


def _variant_note(d: dict[str, Any], name: str) -> str:
    if name in ("mild", "aggressive"):
        return f"{_level_text(d, name)}, alone"
    return _VARIANT_NOTES[name]


# ----------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


#: Rows of the sweep table in report.md (evenly spaced, plus the chosen one); report.json has all.
SWEEP_ROWS = 25


def _sweep_table(d: dict[str, Any]) -> str:
    cal, test = d["sweep"], d.get("test_sweep") or []
    e0 = d["energy"]["original"]
    chosen = chosen_index(cal, d["selector"]["threshold"])
    by_threshold = {round(p["threshold"], 9): p for p in test}
    header = ["threshold", "cal. → mild", "cal. accuracy %", "cal. rel. energy"]
    if test:
        header += ["test → mild", "test accuracy %", "test rel. energy"]
    rows = []
    keep = set(np.linspace(0, len(cal) - 1, min(len(cal), SWEEP_ROWS)).round().astype(int).tolist())
    if chosen is not None:
        keep.add(chosen)
    for i, p in enumerate(cal):
        if i not in keep:
            continue
        mark = " ◀ chosen" if i == chosen else ""
        row = [f"{p['threshold']:.4g}{mark}", _share(p["mild_share"]), f"{p['accuracy']:.2f}",
               f"{p['energy'] / e0:.1%}" if e0 else "—"]
        if test:
            t = by_threshold.get(round(p["threshold"], 9))
            row += (["—"] * 3 if t is None else
                    [_share(t["mild_share"]), f"{t['accuracy']:.2f}", f"{t['energy'] / e0:.1%}"])
        rows.append(row)
    return _table(header, rows)


def _drop_bound_text(d: dict[str, Any]) -> str | None:
    """What the chosen threshold's accuracy drop is bounded by, and how firmly."""
    from prunec.accuracy_bound import format_confidence

    sel = d["selector"]
    bound = sel.get("drop_bound")
    if bound is None:
        return None
    conf = format_confidence(bound["confidence"])
    if bound.get("met_budget") is False:
        rule = ("no threshold met the budget by this rule, so every input goes to the mild network and the bound is "
                "the mild network's own" if sel.get("confidence") is not None else
                "no threshold met the budget even on the calibration estimate, so every input goes to the mild "
                "network")
    elif sel.get("confidence") is not None:
        budget = "the" if sel.get("max_accuracy_drop") is None else f"the {sel['max_accuracy_drop']:g}-point"
        rule = (f"the threshold was chosen by a fixed-sequence test of such bounds, so with {conf} confidence its "
                f"expected loss on such images is within {budget} budget")
    else:
        rule = "the threshold was chosen on the calibration estimate; `--confidence` makes the bound the rule"
    caveats = bound.get("caveats") or []
    firmness = (" The bound is approximate: " + "; ".join(caveats) + "." if caveats else
                " The bound is exact for this compile (a zero-parameter selector on levels that were not "
                "chosen on the calibration images)." if "caveats" in bound else "")
    return (f"At the chosen threshold the accuracy loss against the original, expected on new images drawn like "
            f"the {d['data']['calibration_size']:,} calibration images, is at most **{bound['points']:.2f} "
            f"points** with {conf} confidence (an exact test of the images the dynamic model loses minus those it "
            f"gains against the original, at a threshold chosen on those same images); {rule}.{firmness}")


def _calibration_text(selector: dict[str, Any]) -> str:
    """How the threshold's calibration scores were made (reports without the key used a half split)."""
    return selector.get("calibration") or "the learned selector trains on one half and is thresholded on the other"


def _sweep_summary(d: dict[str, Any]) -> list[str]:
    sweep, split = reported_sweep(d)
    if not sweep:
        return ["No threshold sweep was recorded."]
    e0 = d["energy"]["original"]
    thresholds = [p["threshold"] for p in d["sweep"]]
    out = [f"{len(d['sweep'])} thresholds from {min(thresholds):.4g} to {max(thresholds):.4g} on the "
           f"calibration split ({d['data']['calibration_size']} images"
           + (f"; {_calibration_text(d['selector'])}" if d["selector"]["kind"] == "learned" else "") + ")"
           + (", re-evaluated on the test split." if d.get("test_sweep") else ".")
           if thresholds else f"No calibration sweep was recorded; {len(sweep)} thresholds on the {split} split."]
    hits = [p for p in sweep if in_target_region(d, p["accuracy"], p["energy"])]
    if hits:
        best = min(hits, key=lambda p: p["energy"])
        out.append(f"On the {split} split, {len(hits)} of {len(sweep)} thresholds land in the target "
                   f"region; the cheapest is τ = {best['threshold']:.4g}: {best['accuracy']:.2f}% at "
                   f"{best['energy'] / e0:.1%} of the original energy"
                   + (" (picked after the fact on the test split: for reference, not deployable)."
                      if split == "test" else "."))
    else:
        out.append(f"On the {split} split, no threshold lands in the target region "
                   f"(energy ≤ {1 - TARGET_ENERGY_REDUCTION:.0%} of original at ≤ "
                   f"{TARGET_MAX_ACCURACY_DROP:.1f} pts loss).")
        within = [p for p in sweep
                  if p["accuracy"] >= d["accuracy"]["original"] - TARGET_MAX_ACCURACY_DROP - 1e-9]
        if within:
            best = min(within, key=lambda p: p["energy"])
            out.append(f"The cheapest threshold within the accuracy budget is τ = {best['threshold']:.4g}: "
                       f"{best['accuracy']:.2f}% at {best['energy'] / e0:.1%} of the original energy "
                       f"({1 - best['energy'] / e0:.1%} reduction).")
    return out


def random_routing(d: dict[str, Any]) -> tuple[float, float]:
    """(accuracy %, energy) of routing the dynamic model's mild share at random instead of by
    the selector: what the selector must beat to be worth running."""
    p, acc, role = d["mild_share"], d["accuracy"], d["energy"]["by_role"]
    accuracy = acc["aggressive"] + p * (acc["mild"] - acc["aggressive"])
    return accuracy, role["trunk"] + role["head"] + p * role["mild"]


def input_normalization(report: dict[str, Any]) -> dict[str, list[float]]:
    """``mean``/``std`` keyword arguments for :func:`prunec.data.load_split` that feed a compiled
    model the inputs it was compiled with (empty for reports from before they were recorded)."""
    return dict(report.get("data", {}).get("normalization") or {})


def costed_on(d: dict[str, Any]) -> HardwareInfo:
    """The hardware a report's energies were costed on; reports made before it was recorded were
    costed on the shipped Eyeriss v1."""
    return d.get("hardware") or {"name": "eyeriss_v1", "energy_unit": "normalized",
                                 "energy_per_access": {"mac": 1, "rf": 1, "array": 2, "glb": 6, "dram": 200}}


def energy_unit_label(hw: HardwareInfo) -> str:
    """The energies' unit, short, for axis labels."""
    return "normalised, 1 = one MAC" if hw["energy_unit"] == "normalized" else hw["energy_unit"]


def _energy_units_text(hw: HardwareInfo) -> str:
    """How to read the energies: the costs per access of the hardware they were costed on."""
    e = hw["energy_per_access"]
    costs = ", ".join(f"{label} {e[key]:g}" for key, label in (("rf", "register file"), ("array", "inter-PE array"),
                                                              ("glb", "global buffer"), ("dram", "DRAM"))
                      if key in e)
    unit = "normalised units (one 16-bit MAC = 1)" if hw["energy_unit"] == "normalized" else \
        f"{hw['energy_unit']} (one MAC = {e.get('mac', 0):g})"
    return f"Energy is per inference in {unit}, costed on {hw['name']}: {costs} per access."


def _normalization_text(norm: Normalization | None) -> str:
    if norm is None:
        return ""
    mean, std = (", ".join(f"{v:.4g}" for v in norm[k]) for k in ("mean", "std"))
    return f"; inputs normalized with mean ({mean}), std ({std})"


def _latency_section(d: dict[str, Any]) -> list[str]:
    """The latency table, where the report has one: what routing costs an input in time."""
    lat = d.get("latency_ms")
    if lat is None:
        return []
    r, t0, p, batch = lat["by_role"], lat["original"], d["mild_share"], d["batch"]
    kept = r["trunk"] + r["head"] + r["selector"]
    one = "an input" if batch == 1 else "a batch"
    rows = [["original", lat["original"]], ["mild, alone", lat["mild"]], ["aggressive, alone", lat["aggressive"]],
            [f"**dynamic, expected** ({p:.1%} to mild)", lat["dynamic_expected"]],
            [f"dynamic, {one} kept (trunk + head + selector)", kept],
            [f"dynamic, {one} sent to mild (+ the mild network)", lat["dynamic_worst"]]]
    text = (f"Processing latency of one batch of {batch}: the layers' cycles at the hardware's clock, one layer "
            "after another, each taking the longer of its computation and its DRAM transfer. "
            f"{one.capitalize()} the selector sends to the mild network waits for the aggressive network and the "
            f"selector first: {lat['dynamic_worst'] / t0:.2f}x the original's latency, against {kept / t0:.2f}x "
            "when the aggressive network answers.")
    if batch > 1:
        text += (" The selector routes each input on its own, so in a batch only the routed inputs run the mild "
                 "network: the expectation scales the whole batch's mild time by the share, an approximation.")
    if r["selector"] == 0:
        text += " The selector has no layers on the chip here (its few operations are not timed)."
    text += (" How far to trust it: on AlexNet the compute cycles of the CONV layers are within 25 % of the chip's "
             "published processing latency; DRAM-bound time and pooling, add and linear layers are not "
             "validated, and wide VGG-style layers run slower on the chip than modelled (no global-buffer "
             "bandwidth limit is modelled; see the README).")
    return ["## Latency", "", text, "",
            _table(["variant", f"latency per batch of {batch} (ms)", "of original"],
                   [[name, f"{ms:.3g}", f"{ms / t0:.1%}"] for name, ms in rows]), ""]


def render_markdown(d: dict[str, Any]) -> str:
    """report.md: the headline against the targets first, then the evidence behind it."""
    m, data, sel, e, acc = d["model"], d["data"], d["selector"], d["energy"], d["accuracy"]
    v = verdict(d)
    e0 = e["original"]
    p = d["mild_share"]
    lines: list[str] = []
    add = lines.append

    add(f"# prunec report — {m['arch']} on {data['name']}, target {d['target']}")
    add("")
    add(f"**{v.sentence()}**")
    add("")
    add(f"The dynamic model uses **{e['dynamic'] / e0:.1%}** of the original network's energy per "
        f"inference (**{v.energy_reduction:.1%} reduction**) at **{acc['dynamic']:.2f}%** test accuracy "
        f"against {acc['original']:.2f}% ({_loss_phrase(v.accuracy_drop)}); "
        f"{p:.1%} of test inputs go to the mild network.")
    add("")
    add(v.paper_sentence())
    add("")
    o = d["oracle"]
    add(f"A perfect selector (oracle) would reach {o['accuracy']:.2f}% at {o['energy'] / e0:.1%} of "
        f"the original energy, sending {o['mild_share']:.1%} of inputs to the mild network: the "
        "bound on what a better selector could buy.")
    add("")
    rand_acc, rand_e = random_routing(d)
    add(f"Sending the same {p:.1%} of inputs to the mild network at random, with no selector, would "
        f"reach {rand_acc:.2f}% at {rand_e / e0:.1%} of the original energy: the selector is worth "
        f"{acc['dynamic'] - rand_acc:+.2f} points for its own {(e['dynamic'] - rand_e) / e0:.1%} of energy.")
    add("")
    from prunec.level_advice import level_advice

    if (advice := level_advice(d)) is not None:
        add(f"**{advice}**")
        add("")

    add("## Variants")
    add("")
    rows = []
    for r in variant_rows(d):
        rows.append([f"**{r['variant']}**" if r["variant"] == "dynamic" else r["variant"],
                     f"{r['accuracy']:.2f}", _signed(-r["drop"]) if r["variant"] != "original" else "—",
                     fmt_energy(r["energy"]), f"{r['relative']:.1%}", _share(r["mild_share"]),
                     _variant_note(d, r["variant"])])
    add(_table(["variant", "accuracy %", "Δ acc (pts)", "energy", "rel. energy", "→ mild", "what"],
               rows, "lrrrrrl"))
    add("")

    add("## Energy of the dynamic model by role")
    add("")
    role = e["by_role"]
    contrib = {"trunk": role["trunk"], "head": role["head"], "selector": role["selector"],
               "mild": p * role["mild"]}
    rows = []
    for r in ROLES:
        weight = f"× {p:.3f}" if r == "mild" else "× 1"
        rows.append([r, fmt_energy(role[r]), weight, fmt_energy(contrib[r]),
                     f"{contrib[r] / e['dynamic']:.1%}" if e["dynamic"] else "—",
                     f"{contrib[r] / e0:.1%}"])
    rows.append(["**total**", "", "", f"**{fmt_energy(e['dynamic'])}**", "100.0%",
                 f"**{e['dynamic'] / e0:.1%}**"])
    add(_table(["role", "energy when run", "runs", "expected energy", "share of dynamic",
                "of original"], rows))
    add("")

    add("## Energy per memory level (per inference)")
    add("")
    bl = e["by_level"]
    rows = []
    for lvl in MEMORY_LEVELS:
        a, b = bl["original"][lvl], bl["dynamic"][lvl]
        rows.append([f"{LEVEL_LABELS[lvl]} (`{lvl}`)", fmt_energy(a), f"{a / e0:.1%}", fmt_energy(b),
                     f"{b / e['dynamic']:.1%}" if e["dynamic"] else "—",
                     f"{1 - b / a:.1%}" if a > 0 else "—"])
    rows.append(["**total**", fmt_energy(e0), "100.0%", fmt_energy(e["dynamic"]), "100.0%",
                 f"**{v.energy_reduction:.1%}**"])
    add(_table(["level", "original", "share", "dynamic", "share", "reduction"], rows))
    add("")

    for line in _latency_section(d):
        add(line)

    add("## Selector and threshold sweep")
    add("")
    auc = "n/a" if sel["auc"] is None else f"{sel['auc']:.3f}"
    budget = ("" if sel["max_accuracy_drop"] is None else
              f", chosen on calibration for ≤ {sel['max_accuracy_drop']:.2f} pts loss")
    if sel["max_accuracy_drop"] is not None and sel.get("confidence") is not None:
        from prunec.accuracy_bound import format_confidence

        budget += f" with {format_confidence(sel['confidence'])} confidence"
    add(f"Selector `{sel['kind']}` tapping {', '.join(f'`{t}`' for t in sel['taps']) or '—'}; "
        f"threshold τ = {sel['threshold']:.4g}{budget}; AUC {auc}.")
    add("")
    if (bound := _drop_bound_text(d)) is not None:
        add(bound)
        add("")
    for line in _sweep_summary(d):
        add(line)
    add("")
    if d["sweep"]:
        add(_sweep_table(d))
        add("")
    if d["single_level"]:
        add("Single pruning level, for comparison:")
        add("")
        add(_table(["ratio", "accuracy %", "energy", "rel. energy"],
                   [[f"{s['ratio']:.0%}", f"{s['accuracy']:.2f}", fmt_energy(s["energy"]),
                     f"{s['energy'] / e0:.1%}"] for s in d["single_level"]]))
        add("")

    add("## Plots")
    add("")
    add(f"![Per-layer energy by memory level]({BREAKDOWN_PLOT})")
    add("")
    add(f"![Accuracy against energy]({TRADEOFF_PLOT})")
    add("")

    add("## Notes")
    add("")
    for note in d["notes"] or ["(none)"]:
        add(f"- {note}")
    add("")

    add("## Run")
    add("")
    lv = d["levels"]
    add(_table(["", ""], [
        ["model", f"`{m['source']}` ({m['arch']}, input {'×'.join(str(s) for s in m['input_shape'])}, "
                  f"{m['num_classes']} classes, {m['params']:,} params, {m['macs']:,} MACs)"],
        *([f"{name} level", f"{_level_text(d, name)}: {lv[name]['params']:,} params, {lv[name]['macs']:,} MACs"]
          for name in ("mild", "aggressive")),
        ["data", f"{data['name']}: calibration {data['calibration_size']:,}, test {data['test_size']:,} "
                 f"({data['test_split_note']})" + _normalization_text(data.get("normalization"))],
        ["target / batch", f"{d['target']}, batch {d['batch']}"],
        ["seed", str(d["seed"])],
        ["command", f"`{d['command']}`"],
        ["prunec", f"{d['prunec_version']}, {d['created']}, {d['wall_seconds']:.0f} s"],
        ["files", ", ".join(f"{k}: `{v}`" for k, v in d["files"].items() if v)],
    ], "ll"))
    add("")

    add("## How to read this report")
    add("")
    add(f"- {_energy_units_text(costed_on(d))} Every variant is lowered by the same backend at batch "
        f"{d['batch']}, so the numbers compare directly.")
    add("- The dynamic model always runs the aggressive trunk, its head and the selector; the mild "
        "network runs only for the inputs the selector rejects, so its energy counts with weight "
        "p (the share sent to mild): E_dyn = E(trunk) + E(head) + E(selector) + p · E(mild).")
    add(f"- Energy reduction is 1 − E_dyn / E(original); accuracy loss is original − dynamic in "
        f"percentage points, both on the test split ({data['test_size']:,} images, never used to "
        "train or calibrate). The target is ≥ 70 % reduction at ≤ 2.0 pts loss.")
    add("- The oracle knows the labels and sends an input to the mild network exactly when the "
        "aggressive one is wrong: it is right wherever either network is, which bounds what any "
        "selector can reach with this pair.")
    add("- The sweep moves the selector threshold τ: more inputs to mild means more accuracy and "
        "more energy. τ is chosen on the calibration split; the test columns show how that choice "
        "holds up on unseen data.")
    add(f"- All numbers come from `{REPORT_FILE}` (schema version {d['schema_version']}); "
        "`prunec report DIR` redraws this file and the plots from it.")
    add("")
    return "\n".join(lines)


# ---------------------------------------------------------------------- terminal


def _signed(points: float) -> str:
    """``+1.23`` / ``-1.23``, and ``+0.00`` rather than ``-0.00`` for a change that rounds to none."""
    return f"{round(points, 2) + 0.0:+.2f}"


def print_summary(d: dict[str, Any], console: Console | None = None) -> None:
    """The terminal view: one table of variants and the verdict line."""
    from rich.markup import escape
    from rich.table import Table

    console = console or make_console()
    m, data = d["model"], d["data"]
    table = Table(title=escape(f"prunec — {m['arch']} on {data['name']} ({d['target']}, "
                               f"batch {d['batch']})"),
                  title_justify="left")
    table.add_column("variant")
    table.add_column("accuracy %", justify="right")
    table.add_column("Δ acc (pts)", justify="right")
    table.add_column("energy", justify="right")
    table.add_column("rel. energy", justify="right")
    table.add_column("→ mild", justify="right")
    for r in variant_rows(d):
        style = "bold" if r["variant"] == "dynamic" else ("dim" if r["variant"] == "oracle" else None)
        table.add_row(r["variant"], f"{r['accuracy']:.2f}",
                      "—" if r["variant"] == "original" else _signed(-r["drop"]),
                      fmt_energy(r["energy"]), f"{r['relative']:.1%}", _share(r["mild_share"]),
                      style=style)
    console.print(table)
    e, p = d["energy"], d["mild_share"]
    role = e["by_role"]
    parts = [f"{r} {fmt_energy(role[r] * (p if r == 'mild' else 1))}" for r in ROLES]
    console.print(f"dynamic energy by role: {', '.join(parts)} (mild weighted by p = {p:.3f})",
                  highlight=False)
    if (lat := d.get("latency_ms")) is not None:
        one = "an input" if d["batch"] == 1 else "a batch"
        console.print(f"latency per batch of {d['batch']}: original {lat['original']:.3g} ms; dynamic "
                      f"{lat['dynamic_expected']:.3g} ms expected, {lat['dynamic_worst']:.3g} ms for {one} sent "
                      "to mild", highlight=False)
    if (bound := d["selector"].get("drop_bound")) is not None:
        by = "this bound" if d["selector"].get("confidence") is not None else "the calibration estimate"
        from prunec.accuracy_bound import format_confidence

        approx = ", approximate" if bound.get("caveats") else ""
        how = (f"the threshold meets the budget by {by}" if bound.get("met_budget", True) else
               "no threshold met the budget: every input goes to the mild network")
        console.print(f"accuracy loss on new images like the calibration ones: at most {bound['points']:.2f} pts "
                      f"with {format_confidence(bound['confidence'])} confidence{approx} ({how})", highlight=False)
    v = verdict(d)
    console.print(f"[{'green' if v.met else 'red'}]{escape(v.sentence())}[/]", highlight=False)
    from prunec.level_advice import level_advice

    if (advice := level_advice(d)) is not None:
        console.print(f"[yellow]{escape(advice)}[/]", highlight=False)
    for note in d["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False)


__all__ = [
    "SCHEMA_VERSION", "REPORT_FILE", "MARKDOWN_FILE", "BREAKDOWN_PLOT", "TRADEOFF_PLOT",
    "TARGET_ENERGY_REDUCTION", "TARGET_MAX_ACCURACY_DROP", "PAPER_ENERGY_REDUCTION",
    "PAPER_ACCURACY_DROP", "MEMORY_LEVELS", "LEVEL_LABELS", "ROLES", "VARIANTS", "Report", "Verdict",
    "SingleLevelRival", "single_level_rival", "cheapest_network_as_accurate",
    "validate_report", "load_report", "input_normalization", "save_report", "render_markdown", "print_summary",
    "render_all", "costed_on", "energy_unit_label", "decimals_apart", "verdict", "in_target_region",
    "reported_sweep", "chosen_index", "fmt_energy", "variant_rows",
]
