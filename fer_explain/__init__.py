"""fer-explain: a Bi-LSTM enhanced dual attention network for facial emotion recognition, and its explanations.

ResNet50 -> channel attention (eq. 1) -> spatial attention (eq. 2) -> 7x7 map read as 49 tokens by a
2-layer Bi-LSTM -> 8 emotions; plus the same network without the Bi-LSTM as a baseline.
"""
from fer_explain.classes import CLASSES

__all__ = ["CLASSES"]
__version__ = "0.1.0"
