"""TTA views are the dihedral transforms they are named after, and presets stack them in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from submission.manifest import TTA_PRESETS
from submission.tta import stack_views, view

N = 5
# Each view as "output pixel (i, j) comes from input pixel f(i, j)" on an N x N image: the definition itself.
SOURCE = {
    "identity": lambda i, j: (i, j),
    "hflip": lambda i, j: (i, N - 1 - j),
    "vflip": lambda i, j: (N - 1 - i, j),
    "rot90": lambda i, j: (j, N - 1 - i),  # counter-clockwise
    "rot180": lambda i, j: (N - 1 - i, N - 1 - j),
    "rot270": lambda i, j: (N - 1 - j, i),
    "transpose": lambda i, j: (j, i),
    "antitranspose": lambda i, j: (N - 1 - j, N - 1 - i),
}


KINDS = {"numpy": np.asarray, "torch": torch.from_numpy}  # the engines' host arrays, the eager models' tensors


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", sorted(SOURCE))
def test_view_moves_pixels_as_defined(name, kind):
    x = np.arange(2 * 3 * N * N).reshape(2, 3, N, N)
    expected = np.empty_like(x)
    for i in range(N):
        for j in range(N):
            si, sj = SOURCE[name](i, j)
            expected[..., i, j] = x[..., si, sj]
    got = view(KINDS[kind](x), name)
    assert type(got) is type(KINDS[kind](x))
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_d4_is_the_whole_dihedral_group():
    x = torch.arange(N * N).reshape(1, 1, N, N)
    outs = {tuple(view(x, n).flatten().tolist()) for n in TTA_PRESETS["d4"]}
    assert len(outs) == 8
    numpy_group = {tuple(np.rot90(f, k).flatten().tolist()) for f in (x[0, 0].numpy(), x[0, 0].numpy()[:, ::-1])
                   for k in range(4)}
    assert outs == numpy_group


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("preset", sorted(TTA_PRESETS))
def test_stack_views_puts_each_view_as_a_block(preset, kind):
    x = KINDS[kind](np.random.default_rng(0).normal(size=(3, 3, N, N)).astype(np.float32))
    stacked = stack_views(x, preset)
    names = TTA_PRESETS[preset]
    assert stacked.shape == (len(names) * 3, 3, N, N)
    for k, name in enumerate(names):
        np.testing.assert_array_equal(np.asarray(stacked).reshape(len(names), 3, 3, N, N)[k], np.asarray(view(x, name)))


def test_non_square_flips_keep_the_shape():
    x = torch.randn(2, 3, 4, 6)
    assert stack_views(x, "flips").shape == (8, 3, 4, 6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_one_view_alone_is_that_view(kind):
    x = KINDS[kind](np.arange(2 * 3 * N * N).reshape(2, 3, N, N))
    for name in SOURCE:
        np.testing.assert_array_equal(np.asarray(stack_views(x, [name])), np.asarray(view(x, name)))
