"""CIFAR-10 loader on tiny batches in the real format: pickled dicts inside cifar-10-python.tar.gz."""

import pickle

import numpy as np
import pytest

from minirso.data import DataError, MissingDataError, cifar, download, load_cifar10

from .fakes import batch_bytes, cifar_batches, cifar_tarball, md5, patch_cifar_tables, write_files


def tarball_in(monkeypatch, root, batches, **kw):
    archive = cifar_tarball(batches, **kw)
    patch_cifar_tables(monkeypatch, archive=archive)
    write_files(root / "cifar-10", {"cifar-10-python.tar.gz": archive})
    return archive


def test_tarball_shapes_pixels_labels(monkeypatch, tmp_path):
    batches = cifar_batches()
    tarball_in(monkeypatch, tmp_path, batches)
    raw = load_cifar10(tmp_path, download=False, normalize=False)
    assert raw.name == "cifar-10" and "cifar-10-python.tar.gz" in raw.source and raw.classes[0] == "airplane"
    assert raw.x_train.shape == (17, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    train_rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert raw.y_train.tolist() == train_labels and raw.y_test.tolist() == batches["test_batch"][1]
    # pixel (n, c, h, w) is byte c*1024 + h*32 + w of row n: the red plane, then green, then blue
    for n, c, h, w in [(0, 0, 0, 1), (5, 1, 7, 30), (16, 2, 31, 0), (9, 2, 4, 17)]:
        assert raw.x_train[n, c, h, w] == train_rows[n, c * 1024 + h * 32 + w]
    assert raw.x_test[3, 1, 2, 3] == batches["test_batch"][0][3, 1024 + 2 * 32 + 3]


def test_per_channel_training_mean_is_subtracted(monkeypatch, tmp_path):
    batches = cifar_batches(seed=5)
    tarball_in(monkeypatch, tmp_path, batches)
    ds = load_cifar10(tmp_path, download=False)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32) / 255
    test = batches["test_batch"][0].reshape(-1, 3, 32, 32) / 255
    mean = train.mean(axis=(0, 2, 3), keepdims=True)  # (1, 3, 1, 1): one mean per colour channel
    assert len(np.unique(mean)) == 3
    np.testing.assert_allclose(ds.x_train, train - mean, atol=1e-6)
    np.testing.assert_allclose(ds.x_test, test - mean, atol=1e-6)  # the training mean, not the test set's
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-6)


def test_extracted_directory_is_used_when_complete(monkeypatch, tmp_path):
    batches = cifar_batches(seed=2)
    patch_cifar_tables(monkeypatch, batches=batches)
    folder = tmp_path / "cifar-10" / "cifar-10-batches-py"
    write_files(folder, {n: batch_bytes(n, *b) for n, b in batches.items()})
    ds = load_cifar10(tmp_path, download=False, normalize=False)
    assert "cifar-10-batches-py" in ds.source and ds.y_test.tolist() == batches["test_batch"][1]

    (folder / "data_batch_3").write_bytes(batch_bytes("data_batch_3", *cifar_batches(seed=8)["data_batch_3"]))
    with pytest.raises(DataError, match=r"data_batch_3: md5 .* does not match"):
        load_cifar10(tmp_path, download=False)

    (folder / "data_batch_3").unlink()  # incomplete: the tarball is needed, and it is missing
    with pytest.raises(MissingDataError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, download=False)


def test_damaged_archives_raise_data_error_naming_the_file(monkeypatch, tmp_path):
    batches = cifar_batches()
    archive = tarball_in(monkeypatch, tmp_path, batches)
    path = tmp_path / "cifar-10" / "cifar-10-python.tar.gz"

    path.write_bytes(archive[:-500])  # truncated: fails the published checksum
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: md5 .* does not match"):
        load_cifar10(tmp_path, download=False)

    path.write_bytes(archive[: len(archive) // 2])  # truncated, with a table that agrees: the gzip stream breaks
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE_MD5", md5(path.read_bytes()))
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: damaged tar.gz"):
        load_cifar10(tmp_path, download=False)

    tarball_in(monkeypatch, tmp_path, batches, skip=("data_batch_4",))
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_4"):
        load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize(
    "payload,problem",
    [
        (b"\x80\x02}q\x00(U\x04data", "not a readable pickle"),  # a pickle cut short
        (pickle.dumps({b"labels": [1]}, protocol=2), "expected a dict with b'data'"),
        (
            pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}),
            r"\(2, 3000\) uint8, expected uint8 \(N, 3072\)",
        ),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "expected one integer per image"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}), "labels outside 0-9"),
    ],
)
def test_bad_batches_raise_data_error_naming_the_member(monkeypatch, tmp_path, payload, problem):
    batches = cifar_batches()
    tarball_in(monkeypatch, tmp_path, batches, skip=("data_batch_2",), extra_members=[("data_batch_2", payload)])
    with pytest.raises(DataError, match=f"cifar-10-batches-py/data_batch_2: .*{problem}"):
        load_cifar10(tmp_path, download=False)


def test_download_of_the_tarball(monkeypatch, tmp_path):
    batches = cifar_batches()
    archive = cifar_tarball(batches)
    patch_cifar_tables(monkeypatch, archive=archive)
    calls = []

    def fake(url, path, timeout=None):
        calls.append(url)
        with open(path, "wb") as f:
            f.write(archive)

    monkeypatch.setattr(download, "download_url", fake)
    ds = load_cifar10(tmp_path)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert (tmp_path / "cifar-10" / "cifar-10-python.tar.gz").read_bytes() == archive
    assert sorted(p.name for p in (tmp_path / "cifar-10").iterdir()) == ["cifar-10-python.tar.gz"]
    assert "downloaded from https://www.cs.toronto.edu/~kriz/" in ds.source and ds.x_train.shape[0] == 17
