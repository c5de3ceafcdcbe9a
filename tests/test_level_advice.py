"""The report says when the levels, not the selector, limit a compile: a chosen threshold that
routes (almost) nothing or (almost) everything to the mild network."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
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


def test_a_split_is_not_advised_on() -> None:
    d = make_report()
    assert EDGE_SHARE < calibration_share(d) < 1 - EDGE_SHARE
    assert level_advice(d) is None
    assert "The levels limit this result" not in R.render_markdown(d)


def test_nothing_routed_asks_for_a_more_aggressive_second_level() -> None:
    d = _routing(0.0, 86.9)  # the dynamic model is the aggressive level plus the selector
    md = R.render_markdown(d)
    overhead = d["energy"]["by_role"]["selector"] / d["energy"]["dynamic"]
    assert "the aggressive level alone meets the 2.00-point budget on the calibration images" in md
    assert "sends 0.0% of them to the mild network" in md
    assert f"({overhead:.1%} of the dynamic model's energy)" in md
    assert "a ratio above 0.70" in md and "level search" in md
    assert "mild network alone" not in md


def test_everything_routed_says_the_mild_network_alone_is_cheaper() -> None:
    d = _routing(1.0, 91.4)
    md = R.render_markdown(d)
    e0 = d["energy"]["original"]
    assert d["energy"]["dynamic"] > d["energy"]["mild"]
    assert (f"costs {d['energy']['dynamic'] / e0:.1%} of the original's energy against "
            f"{d['energy']['mild'] / e0:.1%} for the mild network alone (91.40% on the test split)") in md
    assert "aggressive level (ratio 0.70, 86.90%) is too weak" in md
    assert "Not even the mild network alone" not in md
    d["selector"]["drop_bound"] = {"confidence": 0.9, "points": 2.5, "met_budget": False}
    assert "Not even the mild network alone met the budget on the calibration images: a milder mild level " \
           "(a ratio below 0.30)" in R.render_markdown(R.validate_report(d))


def test_a_share_the_user_fixed_is_not_advised_on() -> None:
    d = _routing(0.0, 86.9)
    d["selector"]["max_accuracy_drop"] = None  # --mild-rate: the share was asked for
    assert level_advice(d) is None


@given(st.floats(0.0, 1.0))
def test_advice_exactly_at_the_edges(share: float) -> None:
    d = make_report()
    chosen = R.chosen_index(d["sweep"], d["selector"]["threshold"])
    d["sweep"][chosen]["mild_share"] = share
    advice = level_advice(d)
    edge = share < EDGE_SHARE or share > 1 - EDGE_SHARE
    assert (advice is not None) == edge
    if edge:
        assert ("more aggressive second level" in advice) == (share < EDGE_SHARE)


def test_terminal_summary_carries_the_advice() -> None:
    console = Console(record=True, width=400)
    R.print_summary(_routing(0.0, 86.9), console)
    assert "The levels limit this result, not the selector" in console.export_text()
    console = Console(record=True, width=400)
    R.print_summary(make_report(), console)
    assert "The levels limit this result" not in console.export_text()


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_prunec_report_rerenders_the_advice(tmp_path: Any, share: float) -> None:
    R.save_report(_routing(share, 86.9 if share == 0 else 91.4), tmp_path)
    R.render_all(tmp_path)
    assert "The levels limit this result" in (tmp_path / R.MARKDOWN_FILE).read_text()
