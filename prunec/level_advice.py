"""Say when the pair of pruning levels, as chosen, leaves the selector nothing useful to do.

A dynamic model only pays off when the selector splits the inputs. The threshold chosen for an
accuracy budget is the one with the least expected energy that meets it, and that energy grows
with the share sent to the mild network. So a threshold that routes no calibration image means
the aggressive level alone met the budget and the selector is pure overhead: a more aggressive
second level may save more within the same budget. One that routes (almost) every image makes the
dynamic model cost more than the mild network alone. Both are fixed by choosing other levels, which
the report should say in so many words rather than leave to a reader of the threshold sweep.
"""

from __future__ import annotations

from typing import Any

from prunec.report import chosen_index

#: A chosen threshold routing less than this share of the calibration images (or more than its
#: complement) to the mild network counts as routing almost nothing (almost everything).
EDGE_SHARE = 0.01


def _chosen_point(d: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration sweep point at the chosen threshold (the threshold is one of its points)."""
    i = chosen_index(d["sweep"], d["selector"]["threshold"])
    return None if i is None else d["sweep"][i]


def calibration_share(d: dict[str, Any]) -> float | None:
    """The share of calibration images the chosen threshold sends to the mild network, or None
    without a calibration sweep."""
    point = _chosen_point(d)
    return None if point is None else float(point["mild_share"])


def _budget_unmet(d: dict[str, Any]) -> bool:
    """Whether no threshold met the budget, so everything went to mild as a fallback (reports before
    ``drop_bound`` existed say so only in a note)."""
    if (bound := d["selector"].get("drop_bound")) and "met_budget" in bound:
        return bound["met_budget"] is False
    return any(note.startswith("No threshold ") for note in d["notes"])


def _levels_searched(d: dict[str, Any]) -> bool:
    """Whether this compile searched its levels (not given, not reused); the report says so in a note."""
    return "levels_from" not in d and any(note.startswith("Single-level points from the level search")
                                          for note in d["notes"])


def _rule(d: dict[str, Any]) -> str:
    """How the budget was judged: the calibration estimate, or a bound at the asked confidence."""
    from prunec.accuracy_bound import format_confidence

    confidence = d["selector"].get("confidence")
    return ("on the calibration estimate" if confidence is None else
            f"by its bound at {format_confidence(confidence)} confidence")


def level_advice(d: dict[str, Any]) -> str | None:
    """One paragraph on which level to change, or None when the selector splits the inputs.

    Only for a threshold chosen for an accuracy budget: a share the user fixed is not a finding."""
    budget = d["selector"].get("max_accuracy_drop")
    point = _chosen_point(d)
    if budget is None or point is None:
        return None
    share, lv, acc, e = float(point["mild_share"]), d["levels"], d["accuracy"], d["energy"]
    e0, mild, aggressive = e["original"], lv["mild"]["ratio"], lv["aggressive"]["ratio"]
    if share < EDGE_SHARE:
        n = round(share * d["data"]["calibration_size"])
        overhead = e["by_role"]["selector"] / e["dynamic"] if e["dynamic"] > 0 else 0.0
        alone = ("the aggressive level alone meets" if n == 0 else
                 f"the aggressive level alone comes within {n} calibration image{'s' * (n != 1)} of")
        how = f"--mild {mild:g} --aggressive above {aggressive:.2f}"
        if _levels_searched(d):
            how += f", or --search-ratios with candidates above {aggressive:.2f}"
        tested = float(d["mild_share"])
        outcome = (f"the dynamic model is nearly the aggressive network plus the selector's own cost ({overhead:.1%} "
                   "of its energy)" if tested < EDGE_SHARE else
                   f"the threshold routes next to nothing on calibration, yet {tested:.1%} of the test inputs (a "
                   "threshold so close to the aggressive level's own scores does not carry over)")
        return (f"The selector has almost nothing to do here: {alone} the {budget:g}-point budget {_rule(d)}, so "
                f"{outcome}. A more aggressive second level ({how}) may save more energy within the same budget.")
    if share <= 1 - EDGE_SHARE or point["energy"] <= e["mild"]:
        return None
    cost = (f"The dynamic model costs more than the mild network alone here: the chosen threshold sends "
            f"{share:.1%} of the calibration images to it ({point['energy'] / e0:.1%} of the original's energy "
            f"on them, against {e['mild'] / e0:.1%} for the mild network alone).")
    if _budget_unmet(d):
        fix = (f"a milder mild level (--mild below {mild:.2f}) or more fine-tuning" if mild > 0 else
               "a larger budget" + (" or a lower --confidence" if d["selector"].get("confidence") else ""))
        return (f"{cost} No threshold met the {budget:g}-point budget {_rule(d)}, not even the mild network alone "
                f"(ratio {mild:.2f}, {acc['mild']:.2f}% on the test split): that takes {fix} first.")
    return (f"{cost} The aggressive level (ratio {aggressive:.2f}, {acc['aggressive']:.2f}% on the test split) "
            f"answers too few inputs well enough for the budget, or the selector cannot tell which: a milder "
            f"aggressive level (--aggressive between {mild:.2f} and {aggressive:.2f}) or more fine-tuning "
            "(--aggressive-epochs) may help; otherwise deploy the mild network alone.")


__all__ = ["EDGE_SHARE", "calibration_share", "level_advice"]
