"""edge.metrics with hand-computable examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.metrics import agreement, latency_stats, sqnr_db, top_k_accuracy

LOGITS = np.array([[0.1, 0.7, 0.2],   # top-1 = 1, top-2 = {1, 2}
                   [0.5, 0.3, 0.2],   # top-1 = 0, top-2 = {0, 1}
                   [0.2, 0.2, 0.6],   # top-1 = 2, top-2 = {2, 0} (tie: lower index first)
                   [0.3, 0.4, 0.3]])  # top-1 = 1, top-2 = {1, 0}
LABELS = np.array([1, 1, 0, 2])


def test_top_k_accuracy_by_hand():
    assert top_k_accuracy(LOGITS, LABELS, 1) == pytest.approx(1 / 4)
    assert top_k_accuracy(LOGITS, LABELS, 2) == pytest.approx(3 / 4)  # rows 0, 1, 2 hit; row 3 misses
    assert top_k_accuracy(LOGITS, LABELS, 3) == 1.0
    assert top_k_accuracy(LOGITS, LABELS, 10) == 1.0


def test_top_k_accepts_one_hot_labels():
    one_hot = np.eye(3)[LABELS]
    assert top_k_accuracy(LOGITS, one_hot, 1) == pytest.approx(0.25)


def test_top_k_rejects_bad_shapes():
    with pytest.raises(ValueError, match="4 score rows but 3 labels"):
        top_k_accuracy(LOGITS, LABELS[:3])
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_accuracy(LOGITS, LABELS, 0)
    assert math.isnan(top_k_accuracy(np.zeros((0, 3)), np.zeros(0, int)))


def test_agreement_counts_equal_argmax():
    other = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]], float)  # argmax 1, 1, 2, 1
    assert agreement(LOGITS, other) == pytest.approx(3 / 4)
    assert agreement(LOGITS, LOGITS) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        agreement(LOGITS, other[:3])


def test_sqnr_db_by_hand():
    ref = np.array([3.0, 4.0])          # signal power 25
    test = np.array([3.0, 3.5])         # noise power 0.25 -> ratio 100 -> 20 dB
    assert sqnr_db(ref, test) == pytest.approx(20.0)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(np.zeros(2), np.ones(2)) == -math.inf
    with pytest.raises(ValueError):
        sqnr_db(ref, np.ones(3))


def test_latency_stats_by_hand():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert stats["count"] == 5
    assert stats["mean"] == pytest.approx(4.0)
    assert stats["std"] == pytest.approx(math.sqrt((9 + 4 + 1 + 0 + 36) / 5))
    assert (stats["min"], stats["max"], stats["p50"]) == (1.0, 10.0, 3.0)
    assert stats["p90"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear interpolation at rank 3.6
    assert stats["p99"] == pytest.approx(4.0 + 0.96 * 6.0)
    empty = latency_stats([])
    assert empty["count"] == 0 and math.isnan(empty["mean"])
