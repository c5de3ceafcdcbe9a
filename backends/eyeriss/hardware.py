"""Hardware description of a row-stationary accelerator, read from YAML and validated.

The file is checked field by field on load, so a typo or an impossible value (a zero-sized
PE array, a global buffer smaller than one tile row, negative energy) is reported as a
single :class:`UserError` naming the file and the field, instead of surfacing later as a
mapper failure or a nonsense energy.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from prunec.errors import UserError

DEFAULT_HW = os.path.join(os.path.dirname(__file__), "eyeriss_v1.yaml")

_TOP_KEYS = {"name", "description", "word_bits", "pe_array", "scratchpad_words", "global_buffer_kb",
             "clock_mhz", "dram_bandwidth_gb_s", "filter_bus_words_per_cycle", "energy"}
_ENERGY_KEYS = ("mac", "rf", "array", "glb", "dram")


@dataclass(frozen=True)
class Hardware:
    """An Eyeriss-like accelerator. Frozen (hashable) so mapper results can be memoized on it."""

    name: str
    description: str
    word_bits: int
    pe_rows: int
    pe_cols: int
    spad_ifmap: int
    spad_filter: int
    spad_psum: int
    glb_bytes: int
    clock_hz: float
    dram_bytes_per_s: float
    filter_bus_words_per_cycle: float
    energy_unit: str
    e_mac: float
    e_rf: float
    e_array: float
    e_glb: float
    e_dram: float
    e_static: float = 0.0

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8

    @property
    def glb_words(self) -> int:
        return int(self.glb_bytes // self.word_bytes)

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def dram_words_per_cycle(self) -> float:
        return self.dram_bytes_per_s / self.word_bytes / self.clock_hz

    def to_dict(self) -> dict[str, Any]:
        """The description as recorded in the lowered IR."""
        return {
            "name": self.name,
            "word_bits": self.word_bits,
            "pe_array": [self.pe_rows, self.pe_cols],
            "scratchpad_words": {"ifmap": self.spad_ifmap, "filter": self.spad_filter,
                                 "psum": self.spad_psum},
            "global_buffer_bytes": self.glb_bytes,
            "clock_hz": self.clock_hz,
            "dram_bandwidth_bytes_per_s": self.dram_bytes_per_s,
            "filter_bus_words_per_cycle": self.filter_bus_words_per_cycle,
            "energy_unit": self.energy_unit,
            "energy_per_access": {"mac": self.e_mac, "rf": self.e_rf, "array": self.e_array,
                                  "glb": self.e_glb, "dram": self.e_dram,
                                  "static_per_pe_cycle": self.e_static},
        }


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _num(data: dict, key: str, where: str, path: str, *, integer: bool = False,
         minimum: float = 0.0, strict: bool = True) -> Any:
    if key not in data:
        raise UserError(f"hardware file {path}: missing field '{where}{key}'")
    value = data[key]
    if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        value = float(value)  # PyYAML (YAML 1.1) reads 1e6 as text; only 1.0e6 as a number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"hardware file {path}: field '{where}{key}' must be a number, got {value!r}")
    if not _finite(value):
        raise UserError(f"hardware file {path}: field '{where}{key}' must be a finite number, got {value!r}")
    if integer and (float(value) != int(value)):
        raise UserError(f"hardware file {path}: field '{where}{key}' must be an integer, got {value!r}")
    if (strict and value <= minimum) or (not strict and value < minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise UserError(f"hardware file {path}: field '{where}{key}' must be {bound}, got {value!r}")
    return int(value) if integer else float(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _section(data: dict, key: str, path: str, keys: set[str]) -> dict:
    if key not in data:
        raise UserError(f"hardware file {path}: missing section '{key}'")
    section = data[key]
    if not isinstance(section, dict):
        raise UserError(f"hardware file {path}: '{key}' must be a mapping of {', '.join(sorted(keys))}")
    unknown = set(section) - keys
    if unknown:
        raise UserError(f"hardware file {path}: unknown field '{key}.{sorted(unknown)[0]}' "
                        f"(known: {', '.join(sorted(keys))})")
    return section


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: in a chip
    file it is a mistake, not "the last one wins"."""


def _mapping_without_repeats(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: list[Any] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: construct_mapping merges it
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.append(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)

# Integers as YAML 1.2 reads them and YAML 1.1's floats, neither in base 60: `1:30` is not 90 and `010` is
# ten, not eight (octal); such a value in a chip file is a typo to refuse, never a number to guess.
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeyLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0x[0-9a-fA-F]+|0o[0-7]+)$"),
                                       list("-+0123456789"))
_UniqueKeyLoader.add_implicit_resolver(  # YAML 1.1's floats, base 60 left out (`2e2`: see parse_hardware)
    _FLOAT, re.compile(r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))


def _integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    try:
        return int(text, 10)
    except ValueError:
        try:
            return int(text, 0)  # 0x.., 0o..
        except ValueError:
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not an integer",
                                                    node.start_mark) from None


_UniqueKeyLoader.add_constructor(_INT, _integer)


def load_hardware(path: str | None = None) -> Hardware:
    """Read and validate a hardware YAML file (default: the shipped Eyeriss v1 chip)."""
    path = path or DEFAULT_HW
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"hw must be a hardware YAML path, got {type(path).__name__} (a parsed mapping goes to "
                        f"parse_hardware())")
    try:
        with open(path) as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise UserError(f"hardware file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"hardware file {path} is a directory") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserError(f"hardware file {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read hardware file {path}: {exc}") from None
    return parse_hardware(data, path)


def recorded_hardware(record: Any) -> Hardware:
    """The hardware a lowered IR records (:meth:`Hardware.to_dict`), to cost it again on the same chip,
    checked as a hardware file would be."""
    try:
        e, spad = record["energy_per_access"], record["scratchpad_words"]
        parse_hardware({"name": record["name"], "word_bits": record["word_bits"],
                        "pe_array": {"rows": record["pe_array"][0], "cols": record["pe_array"][1]},
                        "scratchpad_words": dict(spad), "global_buffer_kb": record["global_buffer_bytes"] / 1024,
                        "clock_mhz": record["clock_hz"] / 1e6,
                        "dram_bandwidth_gb_s": record["dram_bandwidth_bytes_per_s"] / 1e9,
                        "filter_bus_words_per_cycle": record["filter_bus_words_per_cycle"],
                        "energy": {"unit": record["energy_unit"], **e}}, "recorded in the IR")
        return Hardware(name=str(record["name"]), description="", word_bits=int(record["word_bits"]),
                        pe_rows=int(record["pe_array"][0]), pe_cols=int(record["pe_array"][1]),
                        spad_ifmap=int(spad["ifmap"]), spad_filter=int(spad["filter"]), spad_psum=int(spad["psum"]),
                        glb_bytes=int(record["global_buffer_bytes"]), clock_hz=float(record["clock_hz"]),
                        dram_bytes_per_s=float(record["dram_bandwidth_bytes_per_s"]),
                        filter_bus_words_per_cycle=float(record["filter_bus_words_per_cycle"]),
                        energy_unit=str(record["energy_unit"]), e_mac=float(e["mac"]), e_rf=float(e["rf"]),
                        e_array=float(e["array"]), e_glb=float(e["glb"]), e_dram=float(e["dram"]),
                        e_static=float(e.get("static_per_pe_cycle", 0.0)))
    except (KeyError, TypeError, ValueError, IndexError):
        raise UserError("the IR does not record the hardware it was lowered on in full: give a hardware "
                        "file (--hw)") from None


def parse_hardware(data: Any, path: str = "<hardware>") -> Hardware:
    """Validate an already-parsed mapping; see :func:`load_hardware`."""
    if not isinstance(data, dict):
        raise UserError(f"hardware file {path} must hold a YAML mapping of fields, "
                        f"got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UserError(f"hardware file {path}: unknown field '{sorted(unknown)[0]}' "
                        f"(known: {', '.join(sorted(_TOP_KEYS))})")
    word_bits = _num(data, "word_bits", "", path, integer=True)
    if word_bits % 8 or word_bits > 64:
        raise UserError(f"hardware file {path}: field 'word_bits' must be 8, 16, 24, ... 64, got {word_bits}")
    array = _section(data, "pe_array", path, {"rows", "cols"})
    rows = _num(array, "rows", "pe_array.", path, integer=True)
    cols = _num(array, "cols", "pe_array.", path, integer=True)
    spad = _section(data, "scratchpad_words", path, {"ifmap", "filter", "psum"})
    s_if = _num(spad, "ifmap", "scratchpad_words.", path, integer=True)
    s_f = _num(spad, "filter", "scratchpad_words.", path, integer=True)
    s_p = _num(spad, "psum", "scratchpad_words.", path, integer=True)
    glb_bytes = _num(data, "global_buffer_kb", "", path) * 1024
    word_bytes = word_bits // 8
    # Physically impossible: a buffer that cannot hold one psum row and one ifmap row.
    if glb_bytes < 2 * word_bytes:
        raise UserError(f"hardware file {path}: field 'global_buffer_kb' is smaller than two words")
    clock = _num(data, "clock_mhz", "", path) * 1e6
    bw = _num(data, "dram_bandwidth_gb_s", "", path) * 1e9
    bus = _num(data, "filter_bus_words_per_cycle", "", path)
    energy = _section(data, "energy", path, set(_ENERGY_KEYS) | {"unit", "static_per_pe_cycle"})
    unit = energy.get("unit", "normalized")
    if unit not in ("normalized", "pJ"):
        raise UserError(f"hardware file {path}: field 'energy.unit' must be 'normalized' or 'pJ', "
                        f"got {unit!r}")
    costs = [_num(energy, k, "energy.", path, minimum=0.0, strict=False) for k in _ENERGY_KEYS]
    if costs[4] < costs[3] or costs[3] < costs[1]:
        raise UserError(f"hardware file {path}: energy per access must grow from 'energy.rf' to "
                        f"'energy.glb' to 'energy.dram' (got rf {costs[1]:g}, glb {costs[3]:g}, "
                        f"dram {costs[4]:g})")
    static = _num(energy, "static_per_pe_cycle", "energy.", path, minimum=0.0, strict=False) \
        if "static_per_pe_cycle" in energy else 0.0
    name = data.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str):
        raise UserError(f"hardware file {path}: field 'name' must be a string")
    return Hardware(name=name, description=str(data.get("description", "")), word_bits=word_bits,
                    pe_rows=rows, pe_cols=cols, spad_ifmap=s_if, spad_filter=s_f, spad_psum=s_p,
                    glb_bytes=int(glb_bytes), clock_hz=clock, dram_bytes_per_s=bw,
                    filter_bus_words_per_cycle=bus, energy_unit=unit, e_mac=costs[0], e_rf=costs[1],
                    e_array=costs[2], e_glb=costs[3], e_dram=costs[4], e_static=static)


__all__ = ["Hardware", "load_hardware", "parse_hardware", "recorded_hardware", "DEFAULT_HW", "asdict"]
