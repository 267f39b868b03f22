"""state_dict_hash on the weights of models with BatchNorm (0-dim ``num_batches_tracked`` buffers)."""

from __future__ import annotations

import torch
from torch import nn

from bench.utils import state_dict_hash


def test_hashes_a_state_with_zero_dim_tensors_and_tells_their_values_apart() -> None:
    state = nn.BatchNorm2d(3).state_dict()
    other = {**state, "num_batches_tracked": torch.tensor(1)}
    assert state_dict_hash(state) != state_dict_hash(other)


def test_hash_of_a_state_without_scalars_is_unchanged() -> None:
    """The reshape of 0-dim tensors must not change the hash of anything that hashed before (the value is
    what state_dict_hash returned for this state before 0-dim tensors were handled, commit a9cbc93)."""
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert state_dict_hash(state) == "a36ffc3451fa160c"


def test_a_channels_last_model_hashes_as_its_nchw_copy() -> None:
    """The decoder trains channels-last on CUDA (bench.diffusion.train.new_run) and its checkpoint
    stores its EMA weights' hash: a channels-last 1x1 kernel counts as contiguous with a last stride
    > 1, which a byte view refused (RuntimeError at the first save). The hash is that of the same
    weights in NCHW, so a checkpoint's hash does not depend on the layout it was trained in."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
    nchw = state_dict_hash(model.state_dict())
    assert state_dict_hash(model.to(memory_format=torch.channels_last).state_dict()) == nchw
