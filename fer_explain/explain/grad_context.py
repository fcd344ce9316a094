"""Gradient context for explanations: autograd on, and cuDNN off while gradients flow through the LSTM on CUDA.

cuDNN's RNN backward refuses to run in eval mode ("cudnn RNN backward can only be called in training mode"), and
the model must stay in eval mode (dropout off, batch-norm statistics frozen), so gradient explanations run the
LSTM on PyTorch's native kernels instead. `torch.backends.cudnn.enabled` is process-global, not per thread, so
several threads explaining at once share one switch: a lock and a user counter turn cuDNN off when the first user
enters and restore the previous setting only when the last one leaves. On CPU nothing is switched.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_users = 0
_saved_enabled: bool | None = None


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


@contextmanager
def gradients_enabled(device: torch.device | str):
    """Inside: inference mode off and `torch.enable_grad()`; on CUDA also cuDNN off (shared safely between threads)."""
    global _users, _saved_enabled
    cuda = _is_cuda(device)
    if cuda:
        with _lock:
            if _users == 0:
                _saved_enabled = torch.backends.cudnn.enabled
                torch.backends.cudnn.enabled = False
            _users += 1
    try:
        # inference_mode(False): callers may sit inside an inference-mode block (a server's request handler)
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        if cuda:
            with _lock:
                _users -= 1
                if _users == 0:
                    torch.backends.cudnn.enabled = _saved_enabled
                    _saved_enabled = None


def active_users() -> int:
    """How many gradient computations currently hold cuDNN off (0 when none; for tests and diagnostics)."""
    return _users
