"""ParamSpec validation and the flat-buffer allocator."""

import numpy as np
import pytest

from minirso.params import KINDS, ParamGroup, ParamSpec, allocate


def test_allocate_cuts_one_buffer_into_views():
    specs = [
        (0, "a.weight", ParamSpec("weight", (3, 2), "weight", 2, stat="in")),
        (0, "a.bias", ParamSpec("bias", (3,), "bias", 2)),
        (2, "b.gamma", ParamSpec("gamma", (4,), "bn_scale", 1, stat="xhat")),
    ]
    buf, groups, views = allocate(specs, np)
    assert buf.shape == (3 * 2 + 3 + 4,) and buf.dtype == np.float32
    assert groups[0] == ParamGroup("a.weight", 0, (3, 2), slice(0, 6), "weight", 2)
    assert groups[1].slice == slice(6, 9) and groups[2].slice == slice(9, 13) and groups[2].layer == 2
    assert [g.size for g in groups] == [6, 3, 4]
    buf[:] = np.arange(13)
    np.testing.assert_array_equal(views[0], [[0, 1], [2, 3], [4, 5]])  # row-major reshape of its slice
    np.testing.assert_array_equal(views[2], [9, 10, 11, 12])
    views[1][2] = -1.0
    assert buf[8] == -1.0
    assert all(np.shares_memory(v, buf) for v in views)


def test_param_spec_rejects_bad_kind_and_shape():
    with pytest.raises(ValueError, match="unknown kind 'scale'"):
        ParamSpec("w", (2,), "scale", 1)
    with pytest.raises(ValueError, match="positive integers"):
        ParamSpec("w", (2, 0), "weight", 1)
    assert "bn_scale" in KINDS and "bias" in KINDS
