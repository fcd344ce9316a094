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
