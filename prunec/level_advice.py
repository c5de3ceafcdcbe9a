"""Say when the two pruning levels, not the selector, limit a compile's result.

A dynamic model only pays off when the selector splits the inputs. When the threshold chosen
for the accuracy budget sends (almost) no calibration image to the mild network, the aggressive
level alone met the budget and the selector is pure overhead: a more aggressive second level
would have saved more energy within the same budget. When it sends (almost) every image, the
aggressive level is too weak to answer anything and the dynamic model costs more than the mild
network alone. Both are fixed by choosing other levels, which the report should say in so many
words rather than leave to a reader of the threshold sweep.
"""

from __future__ import annotations

from typing import Any

#: A chosen threshold routing less than this share of the calibration images (or more than its
#: complement) to the mild network counts as routing nothing (everything).
EDGE_SHARE = 0.01


def calibration_share(d: dict[str, Any]) -> float | None:
    """The share of calibration images the chosen threshold sends to the mild network (the sweep
    point nearest the threshold), or None without a calibration sweep."""
    from prunec.report import chosen_index

    i = chosen_index(d["sweep"], d["selector"]["threshold"])
    return None if i is None else float(d["sweep"][i]["mild_share"])


def level_advice(d: dict[str, Any]) -> str | None:
    """One paragraph on how other levels would do better, or None when the selector splits the inputs.

    Only for a threshold chosen for an accuracy budget: a share the user fixed is not a finding."""
    budget = d["selector"].get("max_accuracy_drop")
    share = calibration_share(d)
    if budget is None or share is None:
        return None
    e, lv, acc = d["energy"], d["levels"], d["accuracy"]
    e0 = e["original"]
    if share < EDGE_SHARE:
        overhead = e["by_role"]["selector"] / e["dynamic"] if e["dynamic"] > 0 else 0.0
        return (f"The levels limit this result, not the selector: the aggressive level alone meets the "
                f"{budget:.2f}-point budget on the calibration images, so the chosen threshold sends "
                f"{share:.1%} of them to the mild network and the selector mostly adds its own cost "
                f"({overhead:.1%} of the dynamic model's energy). A more aggressive second level (a ratio "
                f"above {lv['aggressive']['ratio']:.2f}) would save more energy within the same budget; "
                "leave out --mild/--aggressive to let the level search choose both.")
    if share > 1 - EDGE_SHARE:
        unmet = (d["selector"].get("drop_bound") or {}).get("met_budget") is False
        milder = (f" Not even the mild network alone met the budget on the calibration images: a milder mild level "
                  f"(a ratio below {lv['mild']['ratio']:.2f}) or more fine-tuning is needed first." if unmet else "")
        return (f"The levels limit this result, not the selector: the chosen threshold sends {share:.1%} of "
                f"the calibration images to the mild network, so the dynamic model costs "
                f"{e['dynamic'] / e0:.1%} of the original's energy against {e['mild'] / e0:.1%} for the mild "
                f"network alone ({acc['mild']:.2f}% on the test split). The aggressive level (ratio "
                f"{lv['aggressive']['ratio']:.2f}, {acc['aggressive']:.2f}%) is too weak to answer inputs on its "
                "own within the budget: give it a lower ratio or more fine-tuning (--aggressive-epochs), "
                "or deploy the mild network alone." + milder)
    return None


__all__ = ["EDGE_SHARE", "calibration_share", "level_advice"]
