"""Gradient buffers reused across training steps on CPU, and the one private PyTorch API they need.

PyTorch's CPU allocator gives large blocks back to the OS, so every fresh [d_sae, d_in] gradient pays its
page faults again (≈ 60 ms for 75 MB on a 2-core CPU, as long as the whole sparse product that fills it).
:func:`gradient_buffer` hands the sparse backward the parameter's previous gradient memory instead, once
nothing but this cache refers to it. CUDA's caching allocator needs no help: there nothing is cached.
"""

from __future__ import annotations

import torch
from torch.utils.weak import WeakIdKeyDictionary


def storage_use_count(tensor: torch.Tensor) -> int | None:
    """How many references hold ``tensor``'s storage (counting the one this call makes), or None.

    The cache's one use of private PyTorch API, kept here: ``torch._C._storage_Use_Count`` (the C++
    reference count of a storage, which PyTorch's own tests read) on ``untyped_storage()._cdata``. None where
    this PyTorch build lacks it; the cache then keeps nothing.
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return None
    return use_count(tensor.untyped_storage()._cdata)


_UNSHARED_USE_COUNT = storage_use_count(torch.empty(1))
""":func:`storage_use_count` of a tensor whose storage nothing else holds (None: the API is absent)."""

_BUFFERS: WeakIdKeyDictionary = WeakIdKeyDictionary()
"""parameter → {slot: buffer}; an entry goes when its parameter does."""


def gradient_buffer(parameter: torch.Tensor, shape: tuple[int, ...], slot: str = "grad") -> torch.Tensor:
    """Memory for a new dense gradient of ``parameter``: its previous one when nothing else holds it.

    A one-buffer cache per (parameter, ``slot``), on CPU only. The cached buffer is reused when its storage
    has no user but the cache (the optimiser's ``zero_grad()`` released it), never while ``parameter.grad``
    or anyone else still refers to it. Returns a fresh view, which autograd's gradient accumulation adopts
    without a copy. ``slot`` names further scratch buffers kept for the same parameter.
    """
    slots = _BUFFERS.get(parameter, {})
    cached = slots.get(slot)
    if (
        cached is not None
        and cached.shape == shape
        and cached.dtype == parameter.dtype
        and cached.device == parameter.device
        and storage_use_count(cached) == _UNSHARED_USE_COUNT
    ):
        return cached.view(shape)
    fresh = parameter.new_empty(shape)
    if parameter.device.type == "cpu" and _UNSHARED_USE_COUNT is not None:  # else no safe reuse test
        slots[slot] = fresh
        _BUFFERS[parameter] = slots
    return fresh.view(shape)
