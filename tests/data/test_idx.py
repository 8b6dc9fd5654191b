"""IDX reading and the bundled MNIST test set: published checksums, hand-made files, damaged files."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from minirso.data import BUNDLED_DIR, DataError, bundled_mnist_split, load_mnist_test, read_idx


def write_idx(path, array, type_code=0x08, compress=True):
    """An IDX file written by hand from the format description (magic, big-endian sizes, data)."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_bundled_files_have_the_published_md5():
    published = {
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    for name, md5 in published.items():
        assert hashlib.md5((BUNDLED_DIR / name).read_bytes()).hexdigest() == md5


def test_mnist_test_set_contents():
    images, labels = load_mnist_test()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    # the official test set's class counts (LeCun's page / any MNIST loader)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_split_normalises_with_the_training_mean():
    xtr, ytr, xte, yte = bundled_mnist_split(8000)
    assert xtr.shape == (8000, 1, 28, 28) and xte.shape == (2000, 1, 28, 28) and xtr.dtype == np.float32
    assert abs(float(xtr.mean())) < 1e-5
    images, labels = load_mnist_test()
    mean = images[:8000].astype(np.float64).mean() / 255
    np.testing.assert_allclose(xte[5, 0], images[8005] / 255 - mean, atol=1e-6)
    assert ytr.tolist() == labels[:8000].tolist()


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int32, 0x0C), (np.float32, 0x0D)])
def test_read_hand_written_idx(tmp_path, compress, dtype, code):
    a = (np.arange(2 * 3 * 5).reshape(2, 3, 5) * 7 % 251).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", a, code, compress))
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got, a)


def test_damaged_files_raise_data_error_naming_the_file(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    good = write_idx(tmp_path / "good.gz", a).read_bytes()
    cases = {
        "trunc.gz": good[: len(good) // 2],  # truncated gzip stream
        "raw_short": gzip.decompress(good)[:-3],  # plain IDX missing its last bytes
        "magic": b"\x01\x02" + gzip.decompress(good)[2:],
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(DataError, match=name):
            read_idx(p)
    with pytest.raises(DataError, match="md5"):
        read_idx(tmp_path / "good.gz", md5="0" * 32)
    with pytest.raises(DataError, match="missing.gz"):
        read_idx(tmp_path / "missing.gz")
