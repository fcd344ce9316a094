"""The 8 FER+ emotion classes, in the one order used everywhere, and the synonyms that folder names use."""

CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

# Folder and label names seen in FER2013, FER+, RAF-DB, AffectNet and ad-hoc datasets.
SYNONYMS = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "sad": "sad", "sadness": "sad", "unhappy": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "anger": "anger", "angry": "anger", "mad": "anger",
    "contempt": "contempt", "contemptuous": "contempt",
}


def canonical_class(name: str) -> str | None:
    """Our class name for a label or folder name (case-insensitive), or None when it is not an emotion we know."""
    return SYNONYMS.get(name.strip().lower().replace("-", "_").replace(" ", "_"))


PREDICTED = "predicted"  # the explained class is each face's own prediction


def parse_target(target: str | None, classes=CLASSES) -> str | None:
    """The class to explain: a name or synonym ("happiness", "angry") -> our name; None, "" or "predicted" -> None
    (each face's own prediction). Anything else -> UserError listing the choices."""
    from fer_explain.errors import UserError

    if target is None or str(target).strip().lower() in ("", PREDICTED):
        return None
    name = canonical_class(str(target))
    if name is None or name not in classes:
        raise UserError(f"unknown class {target!r}; expected one of: {', '.join(classes)} (or '{PREDICTED}')")
    return name
