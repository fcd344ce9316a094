"""Class order, synonyms and the one parser of "which class to explain" shared by the CLI and the app."""
import pytest

from fer_explain.classes import CLASSES, canonical_class, parse_target
from fer_explain.errors import UserError


def test_class_order_is_fixed():
    assert CLASSES == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


@pytest.mark.parametrize("raw, expected", [("Happiness", "happy"), ("angry", "anger"), (" sadness ", "sad"),
                                           ("Contempt", "contempt"), ("boredom", None)])
def test_synonyms(raw, expected):
    assert canonical_class(raw) == expected


def test_parse_target():
    assert parse_target(None) is None and parse_target("") is None and parse_target("Predicted") is None
    assert parse_target("happiness") == "happy"
    with pytest.raises(UserError, match="boredom"):
        parse_target("boredom")
    with pytest.raises(UserError, match="contempt"):  # a class the model does not have
        parse_target("contempt", classes=CLASSES[:7])
