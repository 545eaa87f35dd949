"""Both dataset layouts, every bad-input path, and deterministic shards."""
from __future__ import annotations

import os
import shutil

import pytest

from parity.inputs.data import DataError, Sample, from_folders, open_dataset, parse_shard, select
from parity.inputs.sample_images import bundled_photos


@pytest.fixture
def photos():
    return bundled_photos()[:4]


def write_list(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_list_layout(tmp_path, photos):
    img = tmp_path / "val"
    (img / "sub").mkdir(parents=True)
    for p in photos[:3]:
        shutil.copy(p, img)
    shutil.copy(photos[3], img / "sub")
    names = [os.path.basename(p) for p in photos]
    lst = write_list(tmp_path / "val_list.txt",
                     [f"{names[0]} 65", "", f"{names[1]} 970", f"{names[2]}   0", f"sub/{names[3]} 999"])
    ds = open_dataset(str(img), lst)
    assert ds.layout == "list" and len(ds) == 4
    assert ds.samples == [Sample(0, names[0], 65), Sample(1, names[1], 970), Sample(2, names[2], 0),
                          Sample(3, f"sub/{names[3]}", 999)]
    assert os.path.isfile(ds.abspath(ds.samples[3]))
    again = open_dataset(str(img), lst)
    assert again.fingerprint() == ds.fingerprint()
    relabelled = write_list(tmp_path / "other.txt", [f"{names[0]} 66", f"{names[1]} 970", f"{names[2]} 0",
                                                     f"sub/{names[3]} 999"])
    assert open_dataset(str(img), relabelled).fingerprint() != ds.fingerprint()


def test_folder_layout_labels_are_sorted_folder_indices(tmp_path, photos):
    # created out of order; 'n015' sorts before 'n02'; a nested folder and a non-image are found/ignored
    for cls, photo in [("n02", photos[0]), ("n015", photos[1]), ("n10", photos[2])]:
        (tmp_path / cls).mkdir()
        shutil.copy(photo, tmp_path / cls / f"img_{cls}.png")
    (tmp_path / "n10" / "deeper").mkdir()
    shutil.copy(photos[3], tmp_path / "n10" / "deeper" / "a.JPEG")
    (tmp_path / "n02" / "notes.txt").write_text("not an image")
    ds = open_dataset(str(tmp_path))
    assert ds.layout == "folders" and ds.classes == ["n015", "n02", "n10"]
    assert [(s.index, s.path, s.label) for s in ds.samples] == [
        (0, "n015/img_n015.png", 0), (1, "n02/img_n02.png", 1),
        (2, "n10/img_n10.png", 2), (3, "n10/deeper/a.JPEG", 2)]  # torchvision: a folder's files first


@pytest.mark.parametrize("line, message", [
    ("a.JPEG", "line 2: expected '<relative path> <integer label>'"),
    ("a.JPEG 1 2", "line 2: expected '<relative path> <integer label>'"),
    ("a.JPEG cat", "line 2: label 'cat' is not a whole number in ASCII digits"),
    ("a.JPEG 1000", "line 2: label 1000 outside [0, 1000)"),
    ("a.JPEG -1", "line 2: label '-1' is not a whole number in ASCII digits"),
    ("/abs/a.JPEG 3", "line 2: path '/abs/a.JPEG' must be relative"),
    ("../a.JPEG 3", "line 2: path '../a.JPEG' must be relative"),
    ("ok.JPEG 4", "line 2: ok.JPEG already listed on line 1"),
])
def test_malformed_list_lines_name_the_line(tmp_path, line, message):
    lst = write_list(tmp_path / "val_list.txt", ["ok.JPEG 3", line])
    with pytest.raises(DataError) as e:
        open_dataset(str(tmp_path), lst)
    assert message in str(e.value) and str(tmp_path / "val_list.txt") in str(e.value)


def test_every_bad_line_is_listed_at_once(tmp_path):
    lst = write_list(tmp_path / "l.txt", ["a 1", "b x", "c 2", "d", "e 5000"])
    with pytest.raises(DataError, match="3 malformed line") as e:
        open_dataset(str(tmp_path), lst)
    for n in ("line 2", "line 4", "line 5"):
        assert n in str(e.value)


def test_missing_files_are_all_listed_before_any_work(tmp_path, photos):
    shutil.copy(photos[0], tmp_path / "here.png")
    lst = write_list(tmp_path / "l.txt", ["here.png 1", "gone1.JPEG 2", "here.png.bak 3", "sub/gone2.JPEG 4"])
    with pytest.raises(DataError) as e:
        open_dataset(str(tmp_path), lst)
    msg = str(e.value)
    assert "3 of 4 images listed" in msg
    for item in ("gone1.JPEG (line 2)", "here.png.bak (line 3)", "sub/gone2.JPEG (line 4)"):
        assert item in msg


def test_long_problem_lists_are_truncated_with_a_count(tmp_path):
    lst = write_list(tmp_path / "l.txt", [f"missing{i}.JPEG {i}" for i in range(25)])
    with pytest.raises(DataError, match=r"(?s)25 of 25 images .*\.\.\. and 5 more"):
        open_dataset(str(tmp_path), lst)


@pytest.mark.parametrize("setup, message", [
    ("nothing", "no such image folder"),
    ("no_list", "no such list file"),
    ("empty_list", "lists no images"),
    ("flat", "has no class sub-folders"),
    ("empty_class", "1 class folder(s) hold no image"),
])
def test_bad_dataset_inputs(tmp_path, photos, setup, message):
    root, lst = tmp_path / "data", None
    if setup != "nothing":
        root.mkdir()
    if setup == "no_list":
        lst = str(tmp_path / "val_list.txt")
    if setup == "empty_list":
        lst = write_list(tmp_path / "val_list.txt", ["", "  "])
    if setup == "flat":
        shutil.copy(photos[0], root)
    if setup == "empty_class":
        (root / "a").mkdir()
        (root / "b").mkdir()
        shutil.copy(photos[0], root / "a")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_dataset(str(root), lst)


def test_more_class_folders_than_model_classes(tmp_path, photos):
    for c in range(3):
        (tmp_path / f"c{c}").mkdir()
        shutil.copy(photos[0], tmp_path / f"c{c}")
    with pytest.raises(DataError, match="3 class folders, the model has 2 classes"):
        from_folders(str(tmp_path), num_classes=2)


def test_shards_partition_the_limited_set_deterministically():
    samples = [Sample(i, f"{i}.JPEG", i % 7) for i in range(23)]
    limited = select(samples, limit=20)
    shards = [select(samples, limit=20, shard=(k, 3)) for k in range(3)]
    assert [s.index for s in shards[0]] == [0, 3, 6, 9, 12, 15, 18]
    assert [s.index for s in shards[2]] == [2, 5, 8, 11, 14, 17]
    assert sorted(s.index for sh in shards for s in sh) == [s.index for s in limited] == list(range(20))
    assert select(samples, limit=20, shard=(1, 3)) == shards[1]


@pytest.mark.parametrize("text, message", [
    ("3/3", "need 0 <= K < N"), ("-1/2", "need 0 <= K < N"), ("0/0", "need 0 <= K < N"),
    ("1of2", "expected K/N"), ("a/b", "expected K/N"),
])
def test_bad_shard_specs(text, message):
    with pytest.raises(DataError, match=message):
        parse_shard(text)
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None


def test_shard_auto_reads_the_launchers_variables(monkeypatch):
    for names in (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM")):
        for n in names:
            monkeypatch.delenv(n, raising=False)
    with pytest.raises(DataError, match="no launcher variables"):
        parse_shard("auto")
    monkeypatch.setenv("PADDLE_TRAINER_ID", "1")
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "4")
    assert parse_shard("auto") == (1, 4)
    monkeypatch.setenv("RANK", "2")  # torchrun's take precedence
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert parse_shard("auto") == (2, 3)
