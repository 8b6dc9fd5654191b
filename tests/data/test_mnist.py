"""MNIST and Fashion-MNIST loaders on files in the real IDX format: the bundled test set and tiny hand-made sets."""

import gzip
import shutil

import numpy as np
import pytest

from minirso.data import (
    BUNDLED_DIR,
    DataError,
    MissingDataError,
    bundled_mnist_split,
    load_fashion_mnist,
    load_mnist,
    load_mnist_or_bundled,
    load_mnist_test,
    mnist,
)

from .fakes import fake_mnist, gz_files, idx_bytes, md5, mnist_like, patch_idx_table, write_files


def real_test_set_plus_tiny_train(monkeypatch, root):
    """root/mnist/: the bundled official t10k files (real sums) and a tiny training set (patched sums)."""
    d = root / "mnist"
    arrays = mnist_like(n_train=30)
    files = gz_files(arrays)
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    patch_idx_table(monkeypatch, mnist.MNIST_FILES, arrays, files, names)
    write_files(d, {n: files[n] for n in names})
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(BUNDLED_DIR / name, d / name)
    return arrays


def test_published_checksums_match_the_bundled_files():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        raw = (BUNDLED_DIR / name).read_bytes()
        assert mnist.MNIST_FILES[name] == (md5(raw), md5(gzip.decompress(raw)))


def test_load_mnist_reads_pixels_labels_and_normalises(monkeypatch, tmp_path):
    arrays = real_test_set_plus_tiny_train(monkeypatch, tmp_path)
    ds = load_mnist(tmp_path, download=False)
    assert ds.name == "mnist" and str(tmp_path / "mnist") in ds.source and "md5 verified" in ds.source
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    train = arrays["train-images-idx3-ubyte.gz"]
    mean = train.astype(np.float64).mean() / 255  # one global mean over the training pixels
    np.testing.assert_allclose(ds.x_train[:, 0], train / 255 - mean, atol=1e-6)
    test_images, test_labels = load_mnist_test()
    np.testing.assert_allclose(ds.x_test[:, 0], test_images / 255 - mean, atol=1e-6)
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()
    assert ds.y_test.tolist() == test_labels.tolist()

    raw = load_mnist(tmp_path, download=False, normalize=False)
    assert raw.x_train.dtype == np.uint8
    n, h, w = 7, 3, 25  # pixel (n, 0, h, w) is byte n*784 + h*28 + w of the IDX data
    flat = np.frombuffer(idx_bytes(train), np.uint8, offset=16)
    assert raw.x_train[n, 0, h, w] == flat[n * 784 + h * 28 + w] and raw.x_train[n, 0, h, w] != raw.x_train[n, 0, w, h]


def test_plain_and_recompressed_copies_verify_by_content(monkeypatch, tmp_path):
    arrays = fake_mnist(monkeypatch, tmp_path / "elsewhere")
    d = tmp_path / "mnist"
    write_files(
        d,
        {
            "train-images-idx3-ubyte": idx_bytes(arrays["train-images-idx3-ubyte.gz"]),  # gunzip-ed
            "t10k-images-idx3-ubyte": idx_bytes(arrays["t10k-images-idx3-ubyte.gz"]),
        },
    )
    other_gzip = gz_files(arrays, mtime=123456)  # same content, another gzip header: another file md5
    write_files(d, {n: other_gzip[n] for n in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")})
    assert md5(other_gzip["train-labels-idx1-ubyte.gz"]) != mnist.MNIST_FILES["train-labels-idx1-ubyte.gz"][0]
    ds = load_mnist(tmp_path, download=False, normalize=False)
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()


def test_fashion_looks_in_the_data_dir_then_the_system_dir(monkeypatch, tmp_path):
    system = tmp_path / "usr-share"
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIRS", (system,))
    arrays = fake_mnist(monkeypatch, system, table=mnist.FASHION_MNIST_FILES, seed=3)
    ds = load_fashion_mnist(tmp_path / "data", download=False)
    assert ds.name == "fashion-mnist" and str(system) in ds.source and len(ds.classes) == 10
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()

    mine = fake_mnist(monkeypatch, tmp_path / "data" / "fashion-mnist", table=mnist.FASHION_MNIST_FILES, seed=4)
    ds = load_fashion_mnist(tmp_path / "data", download=False)  # the data directory wins
    assert str(system) not in ds.source
    assert ds.y_test.tolist() == mine["t10k-labels-idx1-ubyte.gz"].tolist()


def test_checksum_mismatch_names_the_file(monkeypatch, tmp_path):
    fake_mnist(monkeypatch, tmp_path / "mnist")
    bad = gz_files(mnist_like(seed=9))["train-images-idx3-ubyte.gz"]  # valid IDX, other pixels
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(bad)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*md5") as e:
        load_mnist(tmp_path, download=False)
    assert not isinstance(e.value, MissingDataError)


def test_truncated_gzip_and_bad_idx_raise_data_error(monkeypatch, tmp_path):
    arrays = fake_mnist(monkeypatch, tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated or damaged gzip"):
        load_mnist(tmp_path, download=False)

    # A labels file that is a valid IDX with the published sums but the wrong shape never loads.
    wrong = arrays["train-images-idx3-ubyte.gz"][:, :2, :2].copy()
    path.write_bytes(good)
    lab = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    lab.write_bytes(gzip.compress(idx_bytes(wrong)))
    monkeypatch.setitem(mnist.MNIST_FILES, lab.name, (md5(lab.read_bytes()), md5(idx_bytes(wrong))))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*labels"):
        load_mnist(tmp_path, download=False)

    bad_magic = b"\x00\x00\x07\x03" + idx_bytes(wrong)[4:]
    lab.write_bytes(bad_magic)
    monkeypatch.setitem(mnist.MNIST_FILES, lab.name, (md5(bad_magic), "0" * 32))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: not an IDX file"):
        load_mnist(tmp_path, download=False)


def test_missing_files_without_download_name_the_files_and_the_directory(tmp_path):
    with pytest.raises(MissingDataError) as e:
        load_mnist(tmp_path, download=False)
    msg = str(e.value)
    for name in (
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "mnist"),
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "download=True",
        "MINIRSO_DATA",
    ):
        assert name in msg
    assert not (tmp_path / "mnist").exists()  # looking does not create directories


def test_or_bundled_falls_back_to_the_bundled_split(tmp_path):
    ds, note = load_mnist_or_bundled(tmp_path)
    assert note == (
        f"full MNIST not found in {tmp_path / 'mnist'}: using the bundled official MNIST test set "
        "split 8,000 train / 2,000 held-out"
    )
    assert "\n" not in note and ds.name == "mnist-test-split" and str(BUNDLED_DIR) in ds.source
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), bundled_mnist_split(8000)):
        np.testing.assert_array_equal(got, want)
    raw, note = load_mnist_or_bundled(tmp_path, n_train=9000, normalize=False)
    assert raw.x_train.shape == (9000, 1, 28, 28) and raw.x_test.dtype == np.uint8 and "1,000 held-out" in note
    np.testing.assert_array_equal(raw.x_test[:, 0], load_mnist_test()[0][9000:])


def test_or_bundled_prefers_the_full_set_and_never_hides_damage(monkeypatch, tmp_path):
    real_test_set_plus_tiny_train(monkeypatch, tmp_path)
    ds, note = load_mnist_or_bundled(tmp_path)
    assert ds.name == "mnist" and ds.x_train.shape[0] == 30 and note.startswith("full MNIST from")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b damaged")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_mnist_or_bundled(tmp_path)


def test_dataset_repr_is_short(tmp_path):
    ds, _ = load_mnist_or_bundled(tmp_path)
    assert len(repr(ds)) < 300 and "(8000, 1, 28, 28)" in repr(ds)
