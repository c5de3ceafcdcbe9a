"""The dynamic runtime: differential test against the standalone networks on real images,
and compile_dynamic end to end on the synthetic set."""

from __future__ import annotations

import pytest
import torch

from prunec.accuracy_bound import point_bound
from prunec.artifact import CompiledModel
from prunec.data import load_split
from prunec.dynamic import compile_dynamic
from prunec.errors import UserError
from prunec.passes.insert_selector import insert_selector
from prunec.selectors import LearnedSelector, fit_selector, front_outputs
from tests.conftest import needs_fashion_mnist
from tests.test_selector import resnet_pair, train_tiny


@pytest.fixture(scope="module")
def fashion_dynamic():
    aggressive, mild = resnet_pair()
    dyn = insert_selector(aggressive, mild, "max-softmax")
    x = load_split("fashion-mnist", "test").subset(256, seed=0).x
    _, scores = dyn.scores(x)
    dyn.threshold = float(scores.median())  # a real mix both ways
    return dyn, x


@needs_fashion_mnist
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_routed_samples_get_exactly_their_network_output(fashion_dynamic, batch: int) -> None:
    dyn, x = fashion_dynamic
    n = {1: 8, 7: 56}.get(batch, len(x))
    routed_any = routed_none = False
    with torch.no_grad():
        for i in range(0, n, batch):
            xb = x[i:i + batch]
            logits, route = dyn(xb, return_route=True)
            _, score = dyn.scores(xb)
            assert torch.equal(route, score > dyn.threshold)
            keep = ~route
            # aggressive answers: same batch computed -> bit-identical
            assert torch.equal(logits[keep], dyn.aggressive(xb)[keep])
            if route.any():
                # mild ran on exactly the gathered sub-batch -> bit-identical to that
                assert torch.equal(logits[route], dyn.mild(xb[route]))
                # ...and matches the mild network on the whole batch up to kernel rounding
                full = dyn.mild(xb)[route]
                torch.testing.assert_close(logits[route], full, rtol=0, atol=1e-5)
                assert torch.equal(logits[route].argmax(1), full.argmax(1))
            routed_any |= bool(route.any())
            routed_none |= bool(keep.any())
            assert torch.equal(dyn(xb), logits)
    assert routed_any and routed_none


def test_compile_dynamic_end_to_end_on_synthetic() -> None:
    torch.manual_seed(0)
    aggressive = train_tiny(4, steps=6)
    mild = train_tiny(8, steps=40, seed=1)
    original = train_tiny(16, steps=60, seed=2)
    calibration = load_split("synthetic", "calibration")
    compiled = compile_dynamic(original, aggressive, mild, calibration, selector="learned",
                               max_accuracy_drop=2.0, epochs=10)
    assert isinstance(compiled, CompiledModel)
    assert compiled.model.threshold == compiled.chosen.threshold == compiled.threshold
    assert compiled.mild is mild and compiled.aggressive is aggressive and compiled.original is original
    assert compiled.sweep[0].mild_share == 0 and compiled.sweep[-1].mild_share == 1
    assert compiled.chosen.feasible == (compiled.chosen.accuracy_drop <= 2.0 + 1e-9)
    assert compiled.costs["mild"] > 0 and compiled.costs["original"] > compiled.costs["mild"]
    pixels = torch.rand(3, 1, 16, 16)
    x = compiled.preprocess(pixels)
    torch.testing.assert_close(x, (pixels - 0.5) / 0.25)
    with torch.no_grad():
        logits, route = compiled.model(x, return_route=True)
    assert logits.shape == (3, 4) and route.shape == (3,)
    # the threshold is calibrated on every calibration image (out-of-fold scores), not half of them
    shares = sorted({round(p.mild_share * len(calibration)) for p in compiled.sweep})
    assert shares[-1] == len(calibration) and len(shares) > len(calibration) // 2 + 1
    # ...while the deployed selector is the one fitted on all of them
    reference = fit_selector(LearnedSelector(compiled.model.selector.tap_channels, 4),
                             *front_outputs(compiled.model.front, calibration.x),
                             compiled.model.scores(calibration.x)[0].argmax(1) != calibration.y, epochs=10)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, compiled.model.selector.state_dict()[name]), name
    # ...and every sweep point's threshold routes, under that deployed selector, the share of the
    # calibration images the point was chosen at (the fold selectors' scores need not share its
    # scale, so a threshold value carried over as is could route a very different share)
    deployed = compiled.model.scores(calibration.x)[1]
    if len(deployed.unique()) == len(deployed):
        for p in compiled.sweep:
            assert round(float((deployed > p.threshold).float().mean()) * len(deployed)) == \
                round(p.mild_share * len(deployed)), p
    rate = compile_dynamic(original, aggressive, mild, calibration, selector="entropy", mild_rate=0.25)
    assert rate.chosen.mild_share <= 0.25 and rate.selector_kind == "entropy"
    # with a confidence, the chosen threshold's drop bound (not its estimate) is within the budget
    bounded = compile_dynamic(original, aggressive, mild, calibration, selector="max-softmax",
                              max_accuracy_drop=5.0, confidence=0.9)
    estimate = compile_dynamic(original, aggressive, mild, calibration, selector="max-softmax",
                               max_accuracy_drop=5.0)
    assert bounded.constraint["confidence"] == 0.9 and "confidence" not in estimate.constraint
    assert [p.lost for p in bounded.sweep] == [p.lost for p in estimate.sweep]  # one sweep, two rules
    assert bounded.chosen.mild_share >= estimate.chosen.mild_share
    assert (point_bound(bounded.chosen, 0.9) <= 5.0) == bounded.chosen.feasible
    assert bounded.chosen.samples == len(calibration)


def test_batch_of_all_and_none_routed() -> None:
    dyn = insert_selector(train_tiny(4, 2), train_tiny(8, 2, seed=1), "margin")
    x = load_split("synthetic", "test").x[:5]
    with torch.no_grad():
        dyn.threshold = -1.0
        logits, route = dyn(x, return_route=True)
        assert route.all() and torch.equal(logits, dyn.mild(x))
        dyn.threshold = 2.0
        logits, route = dyn(x, return_route=True)
        assert not route.any() and torch.equal(logits, dyn.aggressive(x))


@pytest.mark.parametrize("selector", ["margin", "learned"])
def test_an_empty_batch_gives_empty_logits(selector: str) -> None:
    dyn = insert_selector(train_tiny(4, 2), train_tiny(8, 2, seed=1), selector)
    with torch.no_grad():
        logits, route = dyn(load_split("synthetic", "test").x[:0], return_route=True)
    assert logits.shape == (0, 4) and route.shape == (0,)


def test_thresholds_and_inputs_the_model_cannot_take_are_refused_by_name() -> None:
    """A NaN threshold routed nothing, silently, and an infinite one saved a manifest that would not load;
    float64 pixels (numpy's default) met a dtype error from deep inside."""
    dyn = insert_selector(train_tiny(4, 2), train_tiny(8, 2, seed=1), "margin")
    for bad in (float("nan"), float("inf"), "0.5", None):
        with pytest.raises(UserError, match="the threshold must be a finite number"):
            dyn.threshold = bad
    x = load_split("synthetic", "test").x[:3]
    with pytest.raises(ValueError, match="this model takes float32 inputs, got float64: convert them with .float()"):
        dyn(x.double())
    dyn.input_shape = (1, *x.shape[1:])  # as compile sets it: a fresh model refuses other sizes as a loaded one does
    with pytest.raises(ValueError, match="takes N x 1 x 16 x 16 inputs, got 3 x 1 x 20 x 20"):
        dyn(torch.rand(3, 1, 20, 20))
