"""Every image counted exactly once, and every bad data input named: list
spellings, links and link cycles in the class folders, non-UTF-8 names,
labels, byte-order marks, non-regular and oversized inputs, and the decoder's
catch (a damaged image is a bad image; a bug of ours is not)."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from converters.files import paths
from parity.inputs import data as data_module
from parity.inputs import decode as decode_module
from parity.inputs.data import DataError, open_dataset, parse_list
from parity.inputs.sample_images import bundled_photos


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    for name, src in zip(("a.JPEG", "b.JPEG"), bundled_photos()[:2]):
        shutil.copy(src, root / name)
    return root


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


# ---------------------------------------------------------------- lists
@pytest.mark.parametrize("second", ["./a.JPEG", "././a.JPEG", "sub/../a.JPEG", ".//a.JPEG"])
def test_one_image_listed_under_two_spellings_is_named(images, tmp_path, second):
    lst = write(tmp_path / "l.txt", f"a.JPEG 1\n{second} 2\n")
    with pytest.raises(DataError) as e:
        open_dataset(str(images), lst)
    message = str(e.value)
    if ".." in second:
        assert "must be relative" in message or "line 2" in message
    else:
        assert "line 2: a.JPEG already listed on line 1" in message


def test_a_link_to_a_listed_image_is_the_same_image(images, tmp_path):
    os.symlink("a.JPEG", images / "link.JPEG")
    os.link(images / "b.JPEG", images / "hard.JPEG")
    lst = write(tmp_path / "l.txt", "a.JPEG 1\nlink.JPEG 2\nb.JPEG 3\nhard.JPEG 4\n")
    with pytest.raises(DataError) as e:
        open_dataset(str(images), lst)
    message = str(e.value)
    assert "link.JPEG (line 2) is the same file as a.JPEG (line 1)" in message
    assert "hard.JPEG (line 4) is the same file as b.JPEG (line 3)" in message


@pytest.mark.parametrize("label", ["7_5_3", "+753", "\u0667\u0665\u0663", "753.0", "-1", "0x2f1", "\uff17"])
def test_labels_are_ascii_digits_only(images, tmp_path, label):
    lst = write(tmp_path / "l.txt", f"a.JPEG {label}\n")
    with pytest.raises(DataError, match=r"line 1: label .* is not a whole number in ASCII digits"):
        parse_list(lst)


def test_plain_labels_still_read(images, tmp_path):
    lst = write(tmp_path / "l.txt", "a.JPEG 0753\nb.JPEG 0\n")
    assert [(p, v) for _, p, v in parse_list(lst)] == [("a.JPEG", 753), ("b.JPEG", 0)]


def test_a_byte_order_mark_is_accepted(images, tmp_path):
    lst = write(tmp_path / "l.txt", "\ufeffa.JPEG 1\nb.JPEG 2\n")
    ds = open_dataset(str(images), lst)
    assert [s.path for s in ds.samples] == ["a.JPEG", "b.JPEG"]


def test_a_list_that_is_not_utf8_names_the_line(tmp_path):
    lst = write(tmp_path / "l.txt", b"a.JPEG 1\nb\xff.JPEG 2\n")
    with pytest.raises(DataError, match=r"l.txt: line 2: is not UTF-8 text \(byte 0xff\)"):
        parse_list(lst)


def test_non_regular_and_oversized_lists_are_refused_without_reading_them(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match="is a FIFO"):
        parse_list(str(tmp_path / "fifo"))  # would block forever if opened as a file
    with pytest.raises(DataError, match="is a character device"):
        parse_list("/dev/zero")  # would read until memory runs out
    with pytest.raises(DataError, match="is a directory"):
        parse_list(str(tmp_path))
    monkeypatch.setattr(data_module, "MAX_LIST_BYTES", 10)
    big = write(tmp_path / "big.txt", "a.JPEG 1\nb.JPEG 2\n")
    with pytest.raises(DataError, match="over the 10-byte bound for a list file"):
        parse_list(big)


def test_read_bounded_never_reads_past_its_bound(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    assert paths.read_bounded(str(f), 100) == b"x" * 100
    with pytest.raises(paths.CheckpointError, match="over the 99-byte bound"):
        paths.read_bounded(str(f), 99)


def test_a_listed_image_that_is_not_a_regular_file(images, tmp_path):
    os.mkfifo(images / "c.JPEG")
    (images / "d.JPEG").mkdir()
    lst = write(tmp_path / "l.txt", "a.JPEG 1\nc.JPEG 2\nd.JPEG 3\n")
    with pytest.raises(DataError) as e:
        open_dataset(str(images), lst)
    assert "c.JPEG (line 2): is not a regular file" in str(e.value)
    assert "d.JPEG (line 3): is not a regular file" in str(e.value)


# ---------------------------------------------------------------- class folders
@pytest.fixture
def folders(tmp_path):
    root = tmp_path / "val"
    for c, src in zip(("c0", "c1"), bundled_photos()[:2]):
        (root / c).mkdir(parents=True)
        shutil.copy(src, root / c / "x.JPEG")
    return root


def test_folder_link_cycle_is_refused_not_walked(folders):
    os.symlink(".", folders / "c0" / "loop")
    with pytest.raises(DataError, match=r"c0/loop: is the folder c0 again \(a link cycle"):
        open_dataset(str(folders))


def test_two_links_to_one_folder_are_refused(folders, tmp_path):
    (tmp_path / "shared").mkdir()
    shutil.copy(bundled_photos()[2], tmp_path / "shared" / "y.JPEG")
    os.symlink(str(tmp_path / "shared"), folders / "c0" / "s1")
    os.symlink(str(tmp_path / "shared"), folders / "c0" / "s2")
    with pytest.raises(DataError, match="c0/s[12]: is the folder c0/s[12] again"):
        open_dataset(str(folders))
    os.unlink(folders / "c0" / "s2")
    os.symlink(str(tmp_path / "shared"), folders / "c1" / "s2")  # across classes: the same file twice
    with pytest.raises(DataError, match=r"c1/s2/y.JPEG \(class c1\) is the same file as c0/s1/y.JPEG"):
        open_dataset(str(folders))


def test_a_linked_folder_is_still_followed_like_torchvision(folders, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(bundled_photos()[2], elsewhere / "z.JPEG")
    os.symlink(str(elsewhere), folders / "c1" / "more")
    ds = open_dataset(str(folders))
    assert [s.path for s in ds.samples] == ["c0/x.JPEG", "c1/x.JPEG", "c1/more/z.JPEG"]


def test_torchvision_order_is_kept(folders):
    """sorted(os.walk(...)): folders by their path string ('a b' before 'a/'), each one's files sorted."""
    for sub in ("a", "a b", "a/z"):
        (folders / "c0" / sub).mkdir()
    for rel in ("a/2.png", "a/1.png", "a b/0.png", "a/z/0.png", "0.png"):
        shutil.copy(bundled_photos()[3], folders / "c0" / rel)
    expected = [os.path.relpath(os.path.join(d, f), folders).replace(os.sep, "/")
                for d, _, fs in sorted(os.walk(folders / "c0", followlinks=True)) for f in sorted(fs)
                if f.lower().endswith(data_module.IMAGE_EXTENSIONS)]
    ds = open_dataset(str(folders))
    assert [s.path for s in ds.samples if s.label == 0] == expected


def test_a_file_linked_twice_in_the_folders_is_counted_once_or_refused(folders):
    os.symlink("../c0/x.JPEG", folders / "c1" / "same.JPEG")
    with pytest.raises(DataError, match=r"c1/same.JPEG \(class c1\) is the same file as c0/x.JPEG"):
        open_dataset(str(folders))


def test_a_non_utf8_file_name_is_bad_input(folders):
    name = os.fsdecode(b"bad\xff.JPEG")
    shutil.copy(bundled_photos()[0], os.path.join(str(folders / "c0"), name))
    with pytest.raises(DataError, match=r"bad\\xff.JPEG: this file name is not valid UTF-8"):
        open_dataset(str(folders))


# ---------------------------------------------------------------- decoding
def test_decode_records_size_and_digest_of_the_bytes(images):
    path = str(images / "a.JPEG")
    got = decode_module.decode_one(path, "small")
    with open(path, "rb") as f:
        raw = f.read()
    assert got.error is None and got.crop.shape == (192, 192, 3)
    assert (got.size, got.digest) == (len(raw), hashlib.blake2b(raw, digest_size=16).hexdigest())
    assert decode_module.digest_one(path).digest == got.digest


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 truncated", b"GIF89a\x00", b"not an image at all"])
def test_a_damaged_image_is_a_bad_image(tmp_path, content):
    f = tmp_path / "x.JPEG"
    f.write_bytes(content)
    got = decode_module.decode_one(str(f), "small")
    assert got.crop is None and got.error and got.size == len(content)


def test_a_non_regular_image_is_a_bad_image_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "x.JPEG")
    got = decode_module.decode_one(str(tmp_path / "x.JPEG"), "small")
    assert got.crop is None and "FIFO" in got.error


def test_a_bug_in_cropping_is_not_swallowed_as_a_bad_image(images, monkeypatch):
    def broken(*a, **k):
        raise ValueError("a bug of ours in the crop arithmetic")

    monkeypatch.setattr(decode_module, "crop_uint8", broken)
    with pytest.raises(ValueError, match="a bug of ours"):
        decode_module.decode_one(str(images / "a.JPEG"), "small")

    def typo(*a, **k):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(decode_module, "crop_uint8", typo)
    with pytest.raises(TypeError):
        decode_module.decode_one(str(images / "a.JPEG"), "small")
