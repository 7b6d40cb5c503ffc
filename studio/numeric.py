"""Numeric kernels every layer shares (numpy only): defined once, here."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities over the last axis; rows with no finite logit give nan.
    (Method calls rather than ``np.max`` etc.: this runs twice per sampled token.)"""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    if not np.isfinite(top).all():
        top[~np.isfinite(top)] = 0.0
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
