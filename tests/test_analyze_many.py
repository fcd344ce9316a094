"""pipeline.analyze_many, the streaming loop under `predict` and the app's video path: faces of consecutive images
are batched together, results keep their order, and memory stays bounded."""
from __future__ import annotations

import numpy as np


def test_analyze_many_streams_and_bounds_what_it_holds(monkeypatch):
    """Faces of consecutive images share a predict call, results keep their order, and images without faces are
    neither held back nor piled up (a long video without faces would otherwise keep every frame in memory)."""
    import fer_explain.faces as faces_module
    from fer_explain.faces import FaceCrop, FaceSearch
    from fer_explain.pipeline import analyze_many

    crop = FaceCrop(None, np.zeros((48, 48), np.uint8), np.zeros((224, 224, 3), np.uint8))
    monkeypatch.setattr(faces_module, "find_faces", lambda n, pre, **_: FaceSearch([crop] * n, [], None))
    calls = []

    class CountingPredictor:
        preprocessing = None

        def predict(self, batch, prior_correction=0.0):
            calls.append(len(batch))
            return [f"prediction {len(calls)}.{i}" for i in range(len(batch))]

    consumed = []

    def images(counts):
        for key, n in enumerate(counts):
            consumed.append(key)
            yield key, n

    stream = analyze_many(CountingPredictor(), images([0, 2, 1, 0, 3, 0]), batch_size=3)
    key, first = next(stream)
    assert key == 0 and first.faces == [] and consumed == [0] and calls == []  # no face: yielded at once
    results = [first] + [r for _, r in stream]
    assert [len(r.faces) for r in results] == [0, 2, 1, 0, 3, 0] and calls == [3, 3]
    assert [f.prediction for f in results[1].faces + results[2].faces] == ["prediction 1.0", "prediction 1.1",
                                                                            "prediction 1.2"]
    consumed.clear()
    held = analyze_many(CountingPredictor(), images([1] + [0] * 100), batch_size=4)
    next(held)
    assert len(consumed) == 4  # at most batch_size images wait for a batch to fill
