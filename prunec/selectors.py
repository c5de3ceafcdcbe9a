"""Selectors: per input, how likely the aggressive network's answer is wrong.

Score convention everywhere in prunec: **higher = more likely wrong = route to mild**
(``score > threshold`` goes to the mild network).

Kinds

* ``learned`` -- global pooling of the tap(s) (and, by default, the aggressive softmax,
  plain and sorted) into a small MLP with a sigmoid; trained on the calibration split,
  which neither pruned network was fine-tuned on, with labels "aggressive argmax != y"
  and a class-balancing ``pos_weight``.
* ``max-softmax`` (1 - max p), ``margin`` (1 - (p1 - p2)), ``entropy`` -- zero-parameter
  baselines on the aggressive logits.
* ``oracle`` -- the labels themselves; an upper bound for reports, never deployable.

Every selector module has the same call signature ``selector(logits, *taps) -> (N,)``
so the dynamic graph, export and the Eyeriss backend treat them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from prunec.errors import UserError

SELECTOR_KINDS = ("learned", "max-softmax", "margin", "entropy", "oracle")
DEPLOYABLE_KINDS = ("learned", "max-softmax", "margin", "entropy")


# --------------------------------------------------------------------------- score functions


def max_softmax_score(logits: torch.Tensor) -> torch.Tensor:
    """1 - max softmax probability."""
    return 1.0 - torch.softmax(logits, dim=1).amax(dim=1)


def margin_score(logits: torch.Tensor) -> torch.Tensor:
    """1 - (top-1 probability - top-2 probability)."""
    top2 = torch.topk(torch.softmax(logits, dim=1), 2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of the softmax."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def oracle_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 where the aggressive answer is wrong, else 0 (needs labels: reports only)."""
    return (logits.argmax(dim=1) != labels).float()


SCORE_FUNCTIONS = {"max-softmax": max_softmax_score, "margin": margin_score,
                   "entropy": entropy_score}


# --------------------------------------------------------------------------- modules


class ScoreSelector(nn.Module):
    """A zero-parameter selector: a fixed function of the aggressive logits."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in SCORE_FUNCTIONS:
            raise UserError(f"unknown score selector {kind!r}; choose one of: {', '.join(SCORE_FUNCTIONS)}")
        self.kind = kind

    def forward(self, logits: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        return SCORE_FUNCTIONS[self.kind](logits)

    def extra_repr(self) -> str:
        return self.kind


def _pool(t: torch.Tensor) -> torch.Tensor:
    """Global average pooling of an NC... tap to (N, C); 2-D taps pass through."""
    # (N, C, ...) -> (N, C); no Python branch on the rank, so the backend can trace it
    # a trailing 1 makes a 2-D tap 3-D too; flatten, not reshape(N, C, -1): an empty batch has no -1 to infer
    return t.unsqueeze(-1).flatten(2).mean(dim=2)


class LearnedSelector(nn.Module):
    """Pooled tap features (+ softmax, plain and sorted) -> standardise -> MLP -> sigmoid.

    The sorted softmax lets the MLP represent max-softmax/margin exactly; the plain
    softmax and the pooled features let it learn which classes and which feature
    patterns the aggressive network gets wrong. Standardisation statistics are buffers
    set from the training features, so the trained module is self-contained.
    """

    kind = "learned"

    def __init__(self, tap_channels: Sequence[int], num_classes: int, use_logits: bool = True,
                 hidden: int = 32) -> None:
        super().__init__()
        self.tap_channels = [int(c) for c in tap_channels]
        self.num_classes = int(num_classes)
        self.use_logits = bool(use_logits)
        width = sum(self.tap_channels) + (2 * self.num_classes if self.use_logits else 0)
        self.register_buffer("feat_mean", torch.zeros(width))
        self.register_buffer("feat_std", torch.ones(width))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def features(self, logits: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        parts = [_pool(t) for t in taps]
        if self.use_logits:
            p = torch.softmax(logits, dim=1)
            parts += [p, torch.sort(p, dim=1, descending=True).values]
        return torch.cat(parts, dim=1)

    def logit(self, logits: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        f = (self.features(logits, *taps) - self.feat_mean) / self.feat_std
        return self.mlp(f).squeeze(1)

    def forward(self, logits: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(logits, *taps))


def make_selector(kind: str, aggressive_gm: fx.GraphModule | None = None,
                  taps: Sequence[str] | None = None, num_classes: int | None = None,
                  use_logits: bool = True, hidden: int = 32) -> nn.Module:
    """Build an (untrained) selector of ``kind`` for ``aggressive_gm`` tapped at ``taps``.

    The learned selector needs the taps' channel counts, read from ``tensor_meta``
    (run :func:`prunec.frontend.trace` with example inputs first).
    """
    if kind in SCORE_FUNCTIONS:
        return ScoreSelector(kind)
    if kind == "oracle":
        raise UserError("the oracle selector reads the labels; it is an upper bound for reports, "
                        "not a selector a compiled model can use")
    if kind != "learned":
        raise UserError(f"unknown selector {kind!r}; choose one of: {', '.join(SELECTOR_KINDS)}")
    if aggressive_gm is None or not taps or num_classes is None:
        raise UserError("the learned selector needs the aggressive network, its taps and num_classes")
    nodes = {n.name: n for n in aggressive_gm.graph.nodes}
    channels = []
    for tap in taps:
        meta = nodes[tap].meta.get("tensor_meta") if tap in nodes else None
        if meta is None or not hasattr(meta, "shape"):
            raise UserError(f"no shape recorded for tap {tap!r}; trace the model with example inputs")
        channels.append(int(meta.shape[1]))
    return LearnedSelector(channels, num_classes, use_logits, hidden)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def front_outputs(front: nn.Module, x: torch.Tensor, batch_size: int = 512
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``front`` (x -> (logits, *taps)) in batches: (logits, pooled taps)."""
    logits, taps = [], []
    for i in range(0, len(x), batch_size):
        out = front(x[i:i + batch_size])
        logits.append(out[0])
        taps.append([_pool(t) for t in out[1:]])
    return torch.cat(logits), [torch.cat(parts) for parts in zip(*taps, strict=True)]


def train_selector(dynamic_or_parts: Any, calibration_split: Any, epochs: int = 60,
                   seed: int = 0, lr: float = 3e-3, weight_decay: float = 1e-4,
                   batch_size: int = 256, val_fraction: float = 0.2,
                   targets: torch.Tensor | None = None) -> nn.Module:
    """Fit a :class:`LearnedSelector` on ``calibration_split`` (x, y) in place and return it.

    ``dynamic_or_parts`` is a DynamicModel or a ``(front, selector)`` pair. Labels are
    "aggressive argmax != y" unless ``targets`` (one 0/1 per sample, 1 = route to mild)
    says otherwise, e.g. "the aggressive answer is wrong and the mild one right".
    Zero-parameter selectors are returned untouched. See :func:`fit_selector`.
    """
    if isinstance(dynamic_or_parts, tuple):
        front, selector = dynamic_or_parts
    else:
        front, selector = dynamic_or_parts.front, dynamic_or_parts.selector
    if not isinstance(selector, LearnedSelector):
        return selector
    y = calibration_split.y
    logits, pooled = front_outputs(front, calibration_split.x)
    if targets is None:
        labels = (logits.argmax(1) != y).float()
    elif (targets := torch.as_tensor(targets)).shape != y.shape:
        raise UserError(f"targets has shape {tuple(targets.shape)}; the split has {len(y)} samples")
    else:
        labels = targets.float()
    return fit_selector(selector, logits, pooled, labels, epochs=epochs, seed=seed, lr=lr,
                        weight_decay=weight_decay, batch_size=batch_size, val_fraction=val_fraction)


def fit_selector(selector: LearnedSelector, logits: torch.Tensor, pooled: Sequence[torch.Tensor],
                 labels: torch.Tensor, epochs: int = 60, seed: int = 0, lr: float = 3e-3,
                 weight_decay: float = 1e-4, batch_size: int = 256, val_fraction: float = 0.2
                 ) -> LearnedSelector:
    """Fit ``selector`` in place on precomputed front outputs (:func:`front_outputs`).

    ``labels`` are 1 where the input should go to mild. Those are the minority class, so
    BCE gets ``pos_weight = negatives / positives``. A held-out ``val_fraction`` picks the
    epoch with the best ROC AUC, which guards the small calibration set against over-fitting.
    """
    from prunec.calibration import roc_auc

    labels = labels.float()
    with torch.no_grad():
        feats = selector.features(logits, *pooled)
        selector.feat_mean.copy_(feats.mean(0))
        selector.feat_std.copy_(feats.std(0).clamp_min(1e-6))
        feats = (feats - selector.feat_mean) / selector.feat_std

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in selector.mlp:
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    perm = torch.randperm(len(labels), generator=gen)
    n_val = int(len(labels) * val_fraction) if len(labels) >= 50 else 0
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    pos = labels[tr_idx].sum()
    neg = len(tr_idx) - pos
    pos_weight = (neg / pos.clamp_min(1.0)).clamp(0.1, 100.0).reshape(1)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(selector.mlp.parameters(), lr=lr, weight_decay=weight_decay)

    best_auc, best_state = -1.0, None
    selector.train()
    for _ in range(epochs):
        order = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_fn(selector.mlp(feats[idx]).squeeze(1), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if n_val:
            with torch.no_grad():
                auc = roc_auc(selector.mlp(feats[val_idx]).squeeze(1).numpy(), labels[val_idx].numpy())
            if np.isfinite(auc) and auc >= best_auc:
                best_auc = auc
                best_state = {k: v.clone() for k, v in selector.mlp.state_dict().items()}
    if best_state is not None:
        selector.mlp.load_state_dict(best_state)
    selector.eval()
    selector.validation_auc = best_auc if n_val and best_state is not None else float("nan")
    return selector


def cross_fitted_scores(selector: LearnedSelector, logits: torch.Tensor, pooled: Sequence[torch.Tensor],
                        labels: torch.Tensor, folds: int = 5, seed: int = 0, **fit: Any) -> torch.Tensor:
    """Out-of-fold scores: each sample scored by a copy of ``selector`` fitted without it.

    The samples are split into ``folds`` random folds; fold k is scored by a copy fitted
    on the other folds (seed ``seed + 1 + k``). A threshold calibrated on these scores is
    not flattered by the selector's own training samples, yet uses every sample, where a
    fixed train/calibrate split spends half of them on each. ``selector`` itself is left
    untouched; the caller fits it on all samples for deployment (the same scheme as
    scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).
    """
    import copy

    n = len(labels)
    if folds < 2 or n < folds:
        raise UserError(f"cross-fitting needs at least 2 folds and a sample per fold (folds={folds}, samples={n})")
    fold_of = torch.empty(n, dtype=torch.long)
    fold_of[torch.randperm(n, generator=torch.Generator().manual_seed(seed))] = torch.arange(n) % folds
    scores = torch.empty(n)
    for k in range(folds):
        out, into = fold_of == k, fold_of != k
        member = fit_selector(copy.deepcopy(selector), logits[into], [t[into] for t in pooled], labels[into],
                              seed=seed + 1 + k, **fit)
        with torch.no_grad():
            scores[out] = member(logits[out], *[t[out] for t in pooled]).reshape(-1)
    return scores


__all__ = ["SELECTOR_KINDS", "DEPLOYABLE_KINDS", "ScoreSelector", "LearnedSelector", "make_selector",
           "train_selector", "fit_selector", "cross_fitted_scores", "front_outputs", "max_softmax_score",
           "margin_score", "entropy_score", "oracle_score", "SCORE_FUNCTIONS"]
