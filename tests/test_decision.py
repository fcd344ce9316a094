"""The decision rule (fer_explain.decision): logit adjustment by the training prior, in the Predictor, the evaluate
record and the prior-correction study alike, and the claim that it leaves every explanation of a class unchanged.
Tiny resnet18 models on random crops; the prior is made skewed on purpose, as FER+'s is."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_builders import TRAIN_COUNTS
from fer_explain.checkpoint import Checkpoint
from fer_explain.classes import CLASSES
from fer_explain.config import ModelConfig, Preprocessing
from fer_explain.data.dataset import FaceDataset
from fer_explain.decision import adjust_probabilities, adjusted_scores, check_prior_correction, training_prior
from fer_explain.errors import UserError
from fer_explain.evaluate import evaluation_record, predict_probabilities
from fer_explain.model import build_model
from fer_explain.predictor import Predictor
from training.prior_correction import adjusted_predictions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

METADATA = {"data": {"train": {"class_counts": TRAIN_COUNTS}}}  # contempt and disgust rare, as in FER+


def tiny_checkpoint(metadata) -> Checkpoint:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=8, head_hidden=16)).eval()
    return Checkpoint(model, model.config, Preprocessing(), metadata, None)


def faces(n: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_adjustment_renormalises_and_moves_the_decision_toward_rare_classes():
    prior = training_prior(METADATA, "m.safetensors")
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8), size=200).astype(np.float32)
    assert np.array_equal(adjust_probabilities(p, prior, 0.0), p)
    for tau in (0.5, 1.0, 2.0):
        q = adjust_probabilities(p, prior, tau)
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
        assert np.array_equal(q.argmax(1), adjusted_scores(p, prior, tau).argmax(1))
        # each probability ratio is multiplied by the inverse prior ratio to the power tau
        np.testing.assert_allclose(q[:, 5] / q[:, 0], p[:, 5] / p[:, 0] * (prior[0] / prior[5]) ** tau, rtol=1e-4)
    rare = [CLASSES.index("disgust"), CLASSES.index("contempt")]
    predicted_rare = [np.isin(adjust_probabilities(p, prior, tau).argmax(1), rare).sum() for tau in (0, 0.5, 1)]
    assert predicted_rare[0] < predicted_rare[1] < predicted_rare[2]
    # a model that outputs the prior itself is uninformative: at tau = 1 every class is equally likely
    np.testing.assert_allclose(adjust_probabilities(prior[None], prior, 1.0), 1 / 8, atol=1e-6)


def test_a_class_never_seen_in_training_gets_no_boost():
    """RAF-DB has no contempt: a model trained on it must not start naming contempt as tau grows."""
    counts = TRAIN_COUNTS | {"contempt": 0}
    prior = training_prior({"data": {"train": {"class_counts": counts}}}, "rafdb.safetensors")
    assert prior[CLASSES.index("contempt")] == 0 and prior.sum() == pytest.approx(1.0)
    p = np.full((1, 8), 0.02)
    p[0, CLASSES.index("happy")], p[0, CLASSES.index("contempt")] = 0.5, 0.36
    p /= p.sum()
    for tau in (0.5, 1.0, 2.0):
        q = adjust_probabilities(p, prior, tau)
        assert np.isfinite(q).all() and q[0, CLASSES.index("contempt")] < p[0, CLASSES.index("contempt")]
        assert q.argmax() != CLASSES.index("contempt")
    with pytest.raises(UserError, match="training class counts"):
        training_prior({"data": {"train": {"class_counts": dict.fromkeys(CLASSES, 0)}}}, "empty.safetensors")


@pytest.mark.parametrize("bad", [-0.1, 2.5, float("nan"), float("inf"), "x", None])
def test_bad_tau_is_a_user_error(bad):
    with pytest.raises(UserError, match="prior correction"):
        check_prior_correction(bad)
    assert check_prior_correction("0.7") == 0.7


def test_predictor_adjusts_probabilities_and_label_but_not_the_explanations():
    predictor = Predictor(tiny_checkpoint(METADATA), device="cpu")
    raw = predictor.predict(faces())
    for tau in (0.0, 1.0):
        adjusted = predictor.predict(faces(), prior_correction=tau)
        for before, after in zip(raw, adjusted):
            expected = adjust_probabilities(before.probabilities[None], predictor.class_prior(), tau)[0]
            np.testing.assert_allclose(after.probabilities, expected, rtol=1e-5, atol=1e-7)
            assert after.label_index == int(expected.argmax()) and after.label == CLASSES[after.label_index]
            assert after.prior_correction == tau
            # a constant added to a class's logit changes no gradient: same maps and scores for a fixed class
            a, b = predictor.explain(before, "contempt"), predictor.explain(after, "contempt")
            for method in a.maps:
                np.testing.assert_allclose(a.maps[method].grid, b.maps[method].grid, rtol=1e-5, atol=1e-7)
            assert a.faithfulness == b.faithfulness
    labels = {tau: [p.label for p in predictor.predict(faces(), prior_correction=tau)] for tau in (0.0, 2.0)}
    assert labels[0.0] != labels[2.0]  # the skewed prior moves at least one decision of this random model


def test_deciding_again_equals_predicting_at_that_tau():
    """Predictor.decide (the app's slider) re-decides from the as-trained probabilities: the same result as a new
    forward pass at that tau, from any earlier tau, without one."""
    predictor = Predictor(tiny_checkpoint(METADATA), device="cpu")
    start = predictor.predict(faces(), prior_correction=1.5)
    for tau in (0.0, 0.7, 2.0):
        for decided, fresh, earlier in zip([predictor.decide(p, tau) for p in start],
                                           predictor.predict(faces(), prior_correction=tau), start):
            np.testing.assert_array_equal(decided.probabilities, fresh.probabilities)
            np.testing.assert_array_equal(decided.model_probabilities, fresh.model_probabilities)
            assert (decided.label, decided.label_index) == (fresh.label, fresh.label_index)
            assert decided.prior_correction == tau
            assert decided.attended is earlier.attended
    with pytest.raises(UserError, match="between 0 and 2"):
        predictor.decide(start[0], -1)
    with pytest.raises(UserError, match="class_counts"):
        Predictor(tiny_checkpoint({}), device="cpu").decide(start[0], 0.5)


def test_predictor_without_recorded_counts_refuses_a_correction_only():
    predictor = Predictor(tiny_checkpoint({}), device="cpu")
    assert len(predictor.predict(faces(2))) == 2
    with pytest.raises(UserError, match="class_counts"):
        predictor.predict(faces(2), prior_correction=0.5)
    with pytest.raises(UserError, match="between 0 and 2"):
        predictor.predict(faces(2), prior_correction=3)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_evaluate_decides_as_the_prior_correction_study(flip_tta, monkeypatch):
    """`evaluate --prior-correction` and training.prior_correction must agree image by image (the README quotes
    the study's figures and points users to evaluate for checking them)."""
    ckpt = tiny_checkpoint(METADATA)
    labels = torch.arange(12) % 8
    dataset = FaceDataset(faces(12), labels, "test", "random")
    probabilities = predict_probabilities(ckpt.model, dataset, ckpt.preprocessing, "cpu", 4, flip_tta, False)
    prior = training_prior(METADATA, "m")
    monkeypatch.setattr("fer_explain.evaluate.file_sha256", lambda path: "0" * 64)  # the checkpoint has no file
    decisions = []
    for tau in (0.0, 0.8):
        record = evaluation_record(ckpt, dataset, torch.device("cpu"), 4, flip_tta, "random", "test",
                                   progress=False, prior_correction=tau)
        assert record["predictions"] == adjusted_predictions(probabilities, prior, tau).tolist()
        assert record["prior_correction"] == tau
        assert record["accuracy"] == pytest.approx(np.mean(np.array(record["predictions"]) == labels.numpy()))
        decisions.append(record["predictions"])
    assert decisions[0] != decisions[1]  # the correction did change some decision, so the comparison means something
