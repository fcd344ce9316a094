"""Predictor: a checkpoint loaded once, emotions for a batch of face crops, and explanations of each prediction.

The backbone runs once per face: `predict` does one batched `forward_all` under `torch.inference_mode` and keeps each
face's attended 7x7 map; `explain` starts from that map (the explanations only need the token reader and the head).
One Predictor may serve several threads at once: the model is frozen and in eval mode, never hooked or switched to
train mode, and the explainers keep no per-call state. This module never imports gradio (the app imports it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fer_explain.checkpoint import Checkpoint, load_checkpoint
from fer_explain.classes import canonical_class
from fer_explain.decision import adjust_probabilities, check_prior_correction, training_prior
from fer_explain.device import pick_device, prepare_for_inference
from fer_explain.errors import UserError
from fer_explain.explain import EXPLAINERS, Explanation, ExplanationUnavailable, check_methods
from fer_explain.explain.faithfulness import deletion_insertion
from fer_explain.temperature import checkpoint_temperature, temperature_scaled
from fer_explain.transforms import eval_transform

PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_METHODS = ("spatial_attention", "token_saliency", "gradcam")
# deletion/insertion remove one row of the 7x7 map (7 tokens) per step: 8 points per curve. One token per step
# costs ~9x more (resnet50 on 1 CPU thread: 7.4 s against 0.84 s for 3 maps and 3 random orders)
FAITHFULNESS_TOKENS_PER_STEP = 7


@dataclass
class FacePrediction:
    # (K,) float32, in the order of Predictor.classes; with prior_correction > 0 the adjusted probabilities
    # (fer_explain.decision), whose argmax is `label`
    probabilities: np.ndarray
    # (K,) float32 softmax(logits / T), T the checkpoint's calibration temperature (1 when it records none), at
    # tau = 0: what `decide` starts from
    model_probabilities: np.ndarray
    label: str
    label_index: int
    attended: torch.Tensor  # (C, 7, 7) float32 attended map, detached, on the model's device
    spatial_attention: np.ndarray | None  # (7, 7) eq. (2) weights; None when the model has no spatial attention
    prior_correction: float = 0.0  # tau of the decision rule; 0 = the model as trained


@dataclass
class FaceExplanation:
    target: str
    target_index: int
    maps: dict[str, Explanation]
    faithfulness: dict[str, dict]  # method -> {"deletion_auc", "insertion_auc"}; "random" -> the same, random orders
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why this model cannot give it


class Predictor:
    def __init__(self, checkpoint: str | Path | Checkpoint, device: str | torch.device = "auto",
                 precision: str = "auto"):
        """checkpoint: a .safetensors file, a run directory holding model.safetensors, hf://owner/repo/file, or a
        loaded Checkpoint. precision of `predict`: "auto" (bf16 autocast on CUDA, float32 on CPU), "fp32" or "bf16"
        (on CPUs with AVX512-BF16/AMX, resnet50 at batch 1: ~49 ms against ~72 ms in float32); explanations always
        differentiate in float32."""
        self.device = pick_device(device)
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, self.device)
        # frozen: explanations differentiate w.r.t. the attended map only, so no weight gradient is computed or
        # accumulated into shared .grad tensors by concurrent calls
        # counted before inference preparation folds BatchNorm into the convolutions (the model as defined)
        self.num_parameters = sum(p.numel() for p in ckpt.model.parameters())
        self.metadata = ckpt.metadata
        self.temperature = checkpoint_temperature(ckpt.metadata, ckpt.path)  # fer_explain.temperature
        self.model = prepare_for_inference(ckpt.model, self.device).requires_grad_(False)
        self.config, self.preprocessing, self.checkpoint_path = ckpt.config, ckpt.preprocessing, ckpt.path
        self.classes = tuple(self.config.classes)
        self.name = self.config.display_name
        self._explainers = {name: cls(self.model) for name, cls in EXPLAINERS.items()}

    def class_prior(self) -> np.ndarray:
        """The training class frequencies the checkpoint records (UserError when it records none)."""
        return training_prior(self.metadata, self.checkpoint_path, self.classes)

    # ---- input ---------------------------------------------------------------------------------------------
    def _to_batch(self, faces) -> torch.Tensor:
        """uint8 (B, C, S, S) at the training resolution (gray when trained on gray), on the model's device."""
        from torchvision.transforms.v2 import functional as TF

        pre = self.preprocessing
        if isinstance(faces, torch.Tensor):
            if faces.dtype != torch.uint8 or faces.dim() not in (3, 4):
                raise UserError(f"faces must be a uint8 tensor (B, C, H, W); got {faces.dtype} {tuple(faces.shape)}")
            crops = [faces.unsqueeze(1) if faces.dim() == 3 else faces]
        elif isinstance(faces, Sequence) and not isinstance(faces, (str, bytes)):
            crops = []
            for i, face in enumerate(faces):
                face = np.asarray(face)
                if (face.dtype != np.uint8 or face.ndim not in (2, 3)
                        or (face.ndim == 3 and face.shape[2] not in (1, 3, 4))):
                    raise UserError(f"face {i}: expected a uint8 (H, W) or (H, W, 3) crop; "
                                    f"got {face.dtype} {face.shape}")
                face = face[..., None] if face.ndim == 2 else face[..., :3]  # RGBA: alpha dropped
                crops.append(torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None])
        else:
            raise UserError(f"faces must be a uint8 tensor or a list of uint8 arrays; got {type(faces).__name__}")
        size = pre.source_size or pre.image_size
        batch = []
        for crop in crops:
            crop = crop.to(self.device)
            if crop.shape[1] not in (1, 3):
                raise UserError(f"faces must have 1 or 3 channels; got {crop.shape[1]}")
            if pre.grayscale and crop.shape[1] == 3:
                crop = TF.rgb_to_grayscale(crop)  # ITU-R 601 luma, as PIL's convert("L") and OpenCV
            elif not pre.grayscale and crop.shape[1] == 1:
                crop = crop.expand(-1, 3, -1, -1)
            if crop.shape[-2:] != (size, size):  # to the training images' resolution first (FER+: 48x48)
                crop = TF.resize(crop, [size, size], antialias=True)
            batch.append(crop)
        return torch.cat(batch) if batch else torch.empty(0, 1, size, size, dtype=torch.uint8, device=self.device)

    # ---- prediction ----------------------------------------------------------------------------------------
    def predict(self, faces, prior_correction: float = 0.0) -> list[FacePrediction]:
        """faces: uint8 tensor (B, C, H, W) or a list of uint8 crops (H, W) / (H, W, 3) RGB. One batched forward.
        prior_correction: tau of the decision rule (fer_explain.decision); 0 keeps the model's own decision, tau > 0
        favours the classes that were rare in training (the checkpoint must record its training class counts)."""
        tau = check_prior_correction(prior_correction)
        if tau:
            self.class_prior()  # a checkpoint without class counts is refused before the forward pass
        images = self._to_batch(faces)
        if images.shape[0] == 0:
            return []
        x = eval_transform(images, self.preprocessing)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            out = self.model.forward_all(x)
        # outside inference mode: these copies are ordinary tensors that the explanations may differentiate
        probabilities = temperature_scaled(out.probabilities.float().cpu().numpy(), self.temperature)
        b, t, c = out.tokens.shape
        side = int(round(t ** 0.5))
        attended = out.tokens.transpose(1, 2).reshape(b, c, side, side).to(torch.float32, copy=True)
        weights = None if out.spatial_attention is None else out.spatial_attention.float().cpu().numpy()
        predictions = []
        for i in range(b):
            k = int(probabilities[i].argmax())
            as_trained = FacePrediction(probabilities[i], probabilities[i], self.classes[k], k, attended[i],
                                        None if weights is None else weights[i])
            predictions.append(self.decide(as_trained, tau) if tau else as_trained)
        return predictions

    def decide(self, prediction: FacePrediction, prior_correction: float = 0.0) -> FacePrediction:
        """The same face decided with prior correction tau (fer_explain.decision), from its as-trained probabilities:
        no forward pass. The attended map is shared, and the explanations of a class do not depend on tau."""
        tau = check_prior_correction(prior_correction)
        probabilities = prediction.model_probabilities
        if tau:
            probabilities = adjust_probabilities(probabilities, self.class_prior(), tau)
        k = int(probabilities.argmax())
        return replace(prediction, probabilities=probabilities, label=self.classes[k], label_index=k,
                       prior_correction=tau)

    # ---- explanation ---------------------------------------------------------------------------------------
    def target_index(self, target: str | int | None, prediction: FacePrediction | None = None) -> int:
        """Class index of `target`: None -> the predicted class; a name or synonym; an index. Unknown -> UserError."""
        if target is None:
            if prediction is None:
                raise UserError("no target class given")
            return prediction.label_index
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if 0 <= int(target) < len(self.classes):
                return int(target)
        elif isinstance(target, str):
            name = target.strip().lower()
            if name.isdigit() and int(name) < len(self.classes):
                return int(name)
            name = name if name in self.classes else canonical_class(name)
            if name in self.classes:
                return self.classes.index(name)
        raise UserError(f"unknown target class {target!r}; expected one of {', '.join(self.classes)} "
                        f"(or an index 0-{len(self.classes) - 1})")

    def explain(self, prediction: FacePrediction, target: str | int | None = None,
                methods: Sequence[str] = DEFAULT_METHODS, faithfulness: bool = True,
                faithfulness_step: int = FAITHFULNESS_TOKENS_PER_STEP, faithfulness_random: int = 3) -> FaceExplanation:
        """Maps for `target` (default: the predicted class) by each method, and their deletion/insertion scores."""
        index = self.target_index(target, prediction)
        methods = check_methods(methods)
        attended = prediction.attended.unsqueeze(0)
        target_tensor = torch.tensor([index], device=attended.device)
        weights = None if prediction.spatial_attention is None else prediction.spatial_attention[None]
        maps, unavailable = {}, {}
        for method in methods:
            try:
                maps[method] = self._explainers[method].explanations(attended, target_tensor, weights)[0]
            except ExplanationUnavailable as e:
                unavailable[method] = str(e)
        scores = {}
        if faithfulness and maps:
            scores = deletion_insertion(self.model, prediction.attended, index, {m: e.grid for m, e in maps.items()},
                                        tokens_per_step=faithfulness_step, n_random=faithfulness_random)
        return FaceExplanation(self.classes[index], index, maps, scores, unavailable)
