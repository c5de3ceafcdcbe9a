"""Hardware YAML: the shipped chip loads; malformed or impossible files give one clear error."""

from __future__ import annotations

import pytest
import yaml

from prunec.backends.eyeriss.hardware import DEFAULT_HW, load_hardware
from prunec.errors import UserError


def test_default_is_eyeriss_v1() -> None:
    hw = load_hardware()
    assert (hw.pe_rows, hw.pe_cols, hw.word_bits) == (12, 14, 16)
    assert (hw.spad_ifmap, hw.spad_filter, hw.spad_psum) == (12, 224, 24)
    assert hw.glb_bytes == 108 * 1024 and hw.clock_hz == 200e6
    assert (hw.e_mac, hw.e_rf, hw.e_array, hw.e_glb, hw.e_dram) == (1, 1, 2, 6, 200)


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "hw.yaml"
    p.write_text(text)
    return str(p)


def _mutated(tmp_path, fn) -> str:
    with open(DEFAULT_HW) as fh:
        data = yaml.safe_load(fh)
    fn(data)
    return _write(tmp_path, yaml.safe_dump(data))


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["pe_array"].update(rows=0), "pe_array.rows"),
    (lambda d: d["pe_array"].update(cols=2.5), "pe_array.cols"),
    (lambda d: d["scratchpad_words"].pop("filter"), "scratchpad_words.filter"),
    (lambda d: d.update(global_buffer_kb=-1), "global_buffer_kb"),
    (lambda d: d.update(word_bits=12), "word_bits"),
    (lambda d: d["energy"].update(dram=1), "energy.dram"),
    (lambda d: d["energy"].update(glb="six"), "energy.glb"),
    (lambda d: d.update(clock_mhz=0), "clock_mhz"),
    (lambda d: d.update(pe_arry=1), "pe_arry"),
    (lambda d: d["energy"].update(dram=float("nan")), "energy.dram"),
    (lambda d: d.update(global_buffer_kb=float("inf")), "global_buffer_kb"),
    (lambda d: d["pe_array"].update(rows=float("inf")), "pe_array.rows"),
    (lambda d: d.update(clock_mhz=float("nan")), "clock_mhz"),
    (lambda d: d["energy"].update(dram=10**400), "energy.dram"),  # beyond any float
])
def test_bad_fields_named(tmp_path, mutate, field) -> None:
    path = _mutated(tmp_path, mutate)
    with pytest.raises(UserError) as exc:
        load_hardware(path)
    assert field in str(exc.value) and path in str(exc.value)


def test_malformed_yaml(tmp_path) -> None:
    with pytest.raises(UserError, match="not valid YAML"):
        load_hardware(_write(tmp_path, "pe_array: [1, 2\n  : :"))
    with pytest.raises(UserError, match="mapping"):
        load_hardware(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(UserError, match="not found"):
        load_hardware(str(tmp_path / "missing.yaml"))


def test_a_key_given_twice_is_refused(tmp_path) -> None:
    """PyYAML lets the last of two equal keys win; in a chip file that hides a typo."""
    with open(DEFAULT_HW) as fh:
        text = fh.read()
    with pytest.raises(UserError, match=r"key 'dram' given twice") as exc:
        load_hardware(_write(tmp_path, text.replace("  dram: 200", "  dram: 200\n  dram: 50")))
    assert "line" in str(exc.value)


def test_yaml_merge_keys_still_load() -> None:
    """``<<: *anchor`` is no repeated key: the duplicate check leaves YAML merges to the loader,
    which reads them as yaml.safe_load does (an explicit key overrides a merged one)."""
    from prunec.backends.eyeriss.hardware import _UniqueKeyLoader

    text = "base: &b {rf: 1, glb: 6}\nenergy:\n  <<: *b\n  glb: 5\n  dram: 200\n"
    assert yaml.load(text, Loader=_UniqueKeyLoader) == yaml.safe_load(text)  # noqa: S506
    assert yaml.safe_load(text)["energy"] == {"rf": 1, "glb": 5, "dram": 200}


def test_exponent_numbers_without_a_dot_load_as_numbers(tmp_path) -> None:
    """``clock_mhz: 2e2`` is text to PyYAML (YAML 1.1 wants 2.0e2); a chip file means the number.
    Other text stays refused."""
    with open(DEFAULT_HW) as fh:
        text = fh.read()
    plain = load_hardware(str(DEFAULT_HW))
    exponent = load_hardware(_write(tmp_path, text.replace("clock_mhz: 200", "clock_mhz: 2e2")))
    assert exponent == plain
    with pytest.raises(UserError, match="must be a number, got '2e2x'"):
        load_hardware(_write(tmp_path, text.replace("clock_mhz: 200", "clock_mhz: 2e2x")))


@pytest.mark.parametrize(("written", "read"), [("1:40", None), ("0100", 100), ("010", 10), ("0x64", 100),
                                               ("1_00", 100), ("1e2", 100), ("100.", 100), ("+1.0e+2", 100)])
def test_numbers_read_as_yaml_1_2_reads_them(tmp_path, written, read) -> None:
    """YAML 1.1, PyYAML's default, read ``1:40`` as 100 (base 60) and ``010`` as 8 (octal): a typo or a
    zero-padded number silently became another chip. Now the one is refused and the other is ten."""
    with open(DEFAULT_HW) as fh:
        text = fh.read()
    path = _write(tmp_path, text.replace("global_buffer_kb: 108", f"global_buffer_kb: {written}"))
    if read is None:
        with pytest.raises(UserError, match=f"'global_buffer_kb' must be a number, got '{written}'"):
            load_hardware(path)
    else:
        assert load_hardware(path).glb_bytes == read * 1024


@pytest.mark.parametrize("mutate", [lambda d: d["energy"].update(dram=1e308), lambda d: d["energy"].update(mac=1e308)])
def test_a_chip_whose_costs_overflow_is_refused_not_reported_as_inf(tmp_path, mutate) -> None:
    """Finite in the file, yet a layer's energy or latency overflows: every candidate mapping scored NaN,
    the choice was arbitrary and the IR held Infinity (not JSON). One clear error instead."""
    import prunec
    from prunec import zoo
    from prunec.frontend import example_input

    path = _mutated(tmp_path, mutate)
    with pytest.raises(UserError, match="not a finite number") as exc:
        prunec.lower(zoo.build("resnet20"), example_input((1, 3, 32, 32)), hw=path)
    assert path in str(exc.value)
