"""The report says when the pair of levels leaves the selector nothing useful to do: a chosen
threshold that routes (almost) no calibration image, or (almost) every one, to the mild network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rich.console import Console

from prunec import report as R
from prunec.level_advice import EDGE_SHARE, calibration_share, level_advice
from tests.test_report import make_report


def _routing(share: float, dynamic_accuracy: float) -> dict[str, Any]:
    """A valid report whose chosen threshold routes ``share`` of both splits to mild."""
    d = make_report(mild_share=share, dynamic_accuracy=dynamic_accuracy)
    d["sweep"] = [dict(p) for p in d["test_sweep"]]  # calibration as test: the chosen point routes `share`
    return R.validate_report(d)


def _nothing() -> dict[str, Any]:
    return _routing(0.0, 86.9)  # the dynamic model is the aggressive level plus the selector


def _everything() -> dict[str, Any]:
    return _routing(1.0, 91.4)


def test_the_edges_are_what_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"under {EDGE_SHARE * 100:g} %" in readme and f"over {100 - EDGE_SHARE * 100:g} %" in readme


def test_a_split_is_not_advised_on() -> None:
    d = make_report()
    assert EDGE_SHARE < calibration_share(d) < 1 - EDGE_SHARE
    assert level_advice(d) is None
    assert "The selector has almost nothing" not in R.render_markdown(d)
    d["sweep"] = []
    assert level_advice(d) is None


def test_nothing_routed_asks_for_a_more_aggressive_second_level() -> None:
    d = _nothing()
    md = R.render_markdown(d)
    overhead = d["energy"]["by_role"]["selector"] / d["energy"]["dynamic"]
    assert "the aggressive level alone meets the 2-point budget on the calibration estimate" in md
    assert f"the selector's own cost ({overhead:.1%} of its energy)" in md
    assert "(--mild 0.3 --aggressive above 0.70)" in md  # given levels: the search's flag would be refused
    d["notes"].append("Single-level points from the level search had 0.3-epoch fine-tunes; the chosen mild and "
                      "aggressive levels had 1 epochs each.")
    assert "(--mild 0.3 --aggressive above 0.70, or --search-ratios with candidates above 0.70)" in level_advice(d)
    d["levels_from"] = {"directory": "x", "command": "y", "created": "z"}  # reused: nothing was searched here
    assert "--search-ratios" not in level_advice(d)
    assert "mild network alone" not in md
    d["selector"]["confidence"] = 0.9
    assert "meets the 2-point budget by its bound at 90% confidence" in level_advice(d)


def test_a_few_images_routed_are_counted_not_called_nothing() -> None:
    d = _nothing()
    chosen = R.chosen_index(d["sweep"], d["selector"]["threshold"])
    d["sweep"][chosen]["mild_share"] = 2 / d["data"]["calibration_size"]
    advice = level_advice(d)
    assert "comes within 2 calibration images of the 2-point budget" in advice
    assert "alone meets" not in advice


def test_nothing_routed_on_calibration_yet_some_on_test_is_not_called_the_aggressive_network() -> None:
    """The test split may route a real share at a threshold that routed no calibration image: the dynamic
    model is then not "nearly the aggressive network", whatever calibration said."""
    d = _nothing()
    d["mild_share"] = 0.125
    advice = level_advice(d)
    assert "yet 12.5% of the test inputs" in advice and "nearly the aggressive network" not in advice


def test_everything_routed_says_the_mild_network_alone_is_cheaper() -> None:
    d = _everything()
    advice = level_advice(d)
    e0, e = d["energy"]["original"], d["energy"]
    assert e["dynamic"] > e["mild"]
    assert (f"sends 100.0% of the calibration images to it ({e['dynamic'] / e0:.1%} of the original's energy on "
            f"them, against {e['mild'] / e0:.1%} for the mild network alone)") in advice
    assert "aggressive level (ratio 0.70, 86.90% on the test split) answers too few inputs" in advice
    assert "(--aggressive between 0.30 and 0.70)" in advice and "deploy the mild network alone" in advice
    assert "No threshold met" not in advice


@pytest.mark.parametrize("how", ["bound", "note"])
def test_everything_routed_for_want_of_a_threshold_fixes_the_mild_level_first(how: str) -> None:
    d = _everything()
    if how == "bound":
        d["selector"]["confidence"] = 0.95
        d["selector"]["drop_bound"] = {"confidence": 0.95, "points": 2.5, "met_budget": False}
    else:  # a report from before drop_bound: only the note says so
        d["notes"].append("No threshold met the accuracy constraint on calibration data; every input goes to the "
                          "mild network.")
    advice = level_advice(R.validate_report(d))
    rule = "by its bound at 95% confidence" if how == "bound" else "on the calibration estimate"
    assert (f"No threshold met the 2-point budget {rule}, not even the mild network alone (ratio 0.30, 91.40% "
            "on the test split): that takes a milder mild level (--mild below 0.30) or more fine-tuning "
            "first") in advice
    assert "deploy the mild network alone" not in advice and "--aggressive between" not in advice
    d["levels"]["mild"]["ratio"] = 0.0  # the original as the mild level: no milder one exists
    advice = level_advice(d)
    assert "--mild below" not in advice
    assert ("a larger budget or a lower --confidence first" if how == "bound" else "a larger budget first") in advice


def test_a_share_the_user_fixed_is_not_advised_on() -> None:
    d = _nothing()
    d["selector"]["max_accuracy_drop"] = None  # --mild-rate: the share was asked for
    assert level_advice(d) is None


@given(st.floats(0.0, 1.0))
@example(0.0)
@example(0.01)
@example(0.0099999)
@example(0.99)
@example(0.9900001)
@example(1.0)
def test_advice_exactly_at_the_edges(share: float) -> None:
    d = make_report()
    chosen = R.chosen_index(d["sweep"], d["selector"]["threshold"])
    d["sweep"][chosen].update(mild_share=share, energy=d["energy"]["by_role"]["trunk"] + d["energy"]["by_role"]["head"]
                              + d["energy"]["by_role"]["selector"] + share * d["energy"]["by_role"]["mild"])
    advice = level_advice(d)
    assert (advice is not None) == (share < 0.01 or share > 0.99)
    if advice is not None:
        assert ("more aggressive second level" in advice) == (share < 0.01)


def test_terminal_summary_carries_the_advice() -> None:
    console = Console(record=True, width=400)
    R.print_summary(_nothing(), console)
    assert "The selector has almost nothing to do here" in console.export_text()
    console = Console(record=True, width=400)
    R.print_summary(make_report(), console)
    assert "The selector has almost nothing" not in console.export_text()


def test_prunec_report_rerenders_the_advice(tmp_path: Path) -> None:
    for name, d in (("nothing", _nothing()), ("everything", _everything())):
        (tmp_path / name).mkdir()
        R.save_report(d, tmp_path / name)
        run = subprocess.run([sys.executable, "-m", "prunec", "report", str(tmp_path / name)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert "**The selector has almost nothing to do here" in (tmp_path / "nothing" / R.MARKDOWN_FILE).read_text()
    assert "**The dynamic model costs more than the mild network alone" in \
        (tmp_path / "everything" / R.MARKDOWN_FILE).read_text()
