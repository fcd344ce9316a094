"""Data layouts: each loaded from tiny datasets made here (data_builders.py), auto-detection, the FERPlus
majority rule, the RAF-DB label mapping and val carve-out, bad input, and (shared_data) the real FER+ splits."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from data_builders import (VOTE_NAMES, corrupt, gray, make_ferplus_npz, make_ferplus_png, make_rafdb, rgb, save,
                           truncated_png)
from fer_explain.classes import CLASSES
from fer_explain.data import DATA_FORMATS, detect_format, load_split
from fer_explain.data.image_files import decode_image_files
from fer_explain.data.rafdb import validation_mask
from fer_explain.data.votes import LEFT_OUT, majority_labels, soft_labels_from_votes
from fer_explain.errors import UserError

FERPLUS = Path(__file__).resolve().parents[2] / "shared/data/ferplus"


# ---------------------------------------------------------------- majority rule and soft labels
def test_majority_rule_on_hand_written_votes():
    rows = [  # neutral happiness surprise sadness anger disgust fear contempt unknown NF
        [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],   # single votes dropped: 6 of 8 -> neutral
        [0, 5, 0, 0, 0, 0, 0, 0, 0, 5],   # 5 of 10 is a tie, not more than half -> left out
        [4, 0, 0, 3, 0, 0, 0, 0, 0, 0],   # 4 of 7 -> neutral
        [0, 0, 0, 0, 0, 0, 0, 0, 6, 4],   # unknown majority -> left out
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # NF majority -> left out
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],   # all single votes: nothing left -> left out
        [1, 0, 0, 1, 2, 0, 0, 0, 0, 0],   # 2 of 2 after outlier removal (2 of 4 before) -> anger
        [0, 0, 0, 0, 0, 0, 0, 3, 0, 0],   # contempt
        [0, 0, 0, 4, 0, 0, 4, 0, 0, 0],   # sadness/fear tie -> left out
    ]
    expected = ["neutral", None, "neutral", None, None, None, "anger", "contempt", None]
    got = majority_labels(np.array(rows))
    assert [CLASSES[i] if i != LEFT_OUT else None for i in got] == expected


def test_vote_columns_map_to_our_class_order():
    for j, name in enumerate(VOTE_NAMES[:8]):
        votes = np.zeros((1, 10), dtype=int)
        votes[0, j] = 10
        want = {"happiness": "happy", "sadness": "sad"}.get(name, name)
        assert CLASSES[majority_labels(votes)[0]] == want


def test_soft_labels_drop_single_votes_unknown_and_nf():
    soft = soft_labels_from_votes(np.array([[6, 0, 1, 3, 0, 0, 0, 0, 2, 2]]))
    expected = np.zeros(8, dtype=np.float32)
    expected[CLASSES.index("neutral")], expected[CLASSES.index("sad")] = 6 / 9, 3 / 9
    np.testing.assert_allclose(soft[0], expected, rtol=1e-6)


# ---------------------------------------------------------------- ferplus-npz
def test_ferplus_npz_loads_all_train_parts_in_order_with_soft_labels(tmp_path):
    root = make_ferplus_npz(tmp_path)
    assert detect_format(root) == "ferplus-npz"
    train = load_split(root, "train", soft_labels=True)
    parts = [np.load(root / f"train_{i}.npz") for i in (0, 1)]
    assert train.images.shape == (5, 1, 6, 6) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[:, 0], torch.from_numpy(np.concatenate([p["images"] for p in parts])))
    assert train.labels.tolist() == np.concatenate([p["labels"] for p in parts]).tolist()
    assert torch.equal(train.soft_labels.argmax(1), train.labels)  # 7 votes vs 3 unknown: one-hot
    assert torch.allclose(train.soft_labels.sum(1), torch.ones(5))
    assert len(load_split(root, "val")) == 2


def test_ferplus_npz_without_test_archive_fails_only_for_test(tmp_path):
    root = make_ferplus_npz(tmp_path)
    load_split(root, "val")
    with pytest.raises(UserError, match="test.npz"):
        load_split(root, "test")


def test_ferplus_npz_soft_labels_need_labels_csv(tmp_path):
    root = make_ferplus_npz(tmp_path)
    (root / "labels.csv").unlink()
    assert load_split(root, "train").soft_labels is None
    with pytest.raises(UserError, match="labels.csv"):
        load_split(root, "train", soft_labels=True)


def test_ferplus_npz_corrupt_archive_is_a_user_error(tmp_path):
    root = make_ferplus_npz(tmp_path)
    (root / "val.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="val.npz"):
        load_split(root, "val")
    with open(root / "val.npz", "wb") as f:  # a plain .npy array under the archive's name
        np.save(f, np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(UserError, match="val.npz"):
        load_split(root, "val")


# ---------------------------------------------------------------- ferplus (PNG folders + label.csv)
def test_ferplus_png_applies_majority_rule_and_records_bad_files(tmp_path, capsys):
    root = make_ferplus_png(tmp_path)
    assert detect_format(root) == "ferplus"
    ds = load_split(root, "train", soft_labels=True)
    assert [CLASSES[i] for i in ds.labels] == ["neutral", "happy", "contempt"]
    assert ds.images.shape == (3, 1, 8, 8)
    assert ds.images[:, 0, 0, 0].tolist() == [10, 20, 50]
    assert sorted(Path(f).name for f, _ in ds.skipped) == ["fer5.png", "fer6.png"]
    assert "skipped 2" in capsys.readouterr().err
    assert ds.soft_labels[0, CLASSES.index("neutral")] == pytest.approx(0.8)
    with pytest.raises(UserError, match="FER2013Valid"):
        load_split(root, "val")


def test_ferplus_png_malformed_line_is_a_user_error(tmp_path):
    root = make_ferplus_png(tmp_path)
    with open(root / "FER2013Train" / "label.csv", "a") as f:
        f.write("fer9.png,(0, 0, 8, 8),1,2,x,0,0,0,0,0,0,0\n")
    with pytest.raises(UserError, match=r"label.csv:8"):
        load_split(root, "train")


# ---------------------------------------------------------------- rafdb
RAF_TO_OURS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "anger", 7: "neutral"}


def test_rafdb_label_mapping_and_stratified_val_carve_out(tmp_path):
    root = make_rafdb(tmp_path)
    assert detect_format(root) == "rafdb"
    train, val, test = (load_split(root, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (7 * 18, 7 * 2, 7)
    assert train.images.shape[1:] == (3, 8, 8)
    for ds in (train, val, test):
        raf = torch.round(ds.images[:, 0, 4, 4].float() / 30).long().tolist()
        assert [CLASSES[i] for i in ds.labels] == [RAF_TO_OURS[k] for k in raf]
    assert val.class_counts[CLASSES.index("contempt")] == 0 and "contempt" in val.missing_classes
    assert all(val.class_counts[CLASSES.index(c)] == 2 for c in RAF_TO_OURS.values())
    assert load_split(root, "val").fingerprint() == val.fingerprint()  # deterministic


def test_rafdb_validation_mask_is_deterministic_stratified_and_disjoint():
    labels = np.repeat(np.arange(7), [50, 30, 20, 10, 10, 40, 5])
    mask = validation_mask(labels)
    assert np.array_equal(mask, validation_mask(labels))
    assert not np.array_equal(mask, validation_mask(labels, seed=1))
    assert np.bincount(labels[mask], minlength=7).tolist() == [5, 3, 2, 1, 1, 4, 0]  # round(10 %) per class (0.5->0)
    train, val = np.flatnonzero(~mask), np.flatnonzero(mask)
    assert not set(train) & set(val) and len(train) + len(val) == len(labels)


def test_rafdb_bad_label_is_a_user_error(tmp_path):
    root = make_rafdb(tmp_path, per_class=1)
    (root / "EmoLabel/list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(UserError, match="label 1..7"):
        load_split(root, "train")


# ---------------------------------------------------------------- imagefolder
def test_imagefolder_with_split_folders_synonyms_gray_and_resize(tmp_path, capsys):
    save(tmp_path / "train/Happiness/a.png", gray(10, 8))
    save(tmp_path / "train/Happiness/deeper/b.PNG", gray(20, 16))  # recursive, other size
    save(tmp_path / "train/angry/c.jpg", rgb(90, 90, 90, 8))        # R = G = B: still gray
    truncated_png(tmp_path / "train/angry/broken.png")
    corrupt(tmp_path / "train/sad/bad.jpg")
    save(tmp_path / "train/sad/d.bmp", gray(40, 8))
    save(tmp_path / "val/neutral/e.png", gray(50, 8))
    assert detect_format(tmp_path) == "imagefolder"
    ds = load_split(tmp_path, "train", storage_size=12)
    assert ds.images.shape == (4, 1, 12, 12)  # mixed sizes -> storage_size; all gray -> one channel
    assert [CLASSES[i] for i in ds.labels] == ["happy", "happy", "sad", "anger"]  # CLASSES order
    assert sorted(Path(f).name for f, _ in ds.skipped) == ["bad.jpg", "broken.png"]
    assert "skipped 2" in capsys.readouterr().err
    assert load_split(tmp_path, "val").images.shape == (1, 1, 8, 8)  # one size: native
    with pytest.raises(UserError, match="test"):
        load_split(tmp_path, "test")


def test_imagefolder_flat_rgb_serves_every_split(tmp_path):
    save(tmp_path / "Surprised/a.png", rgb(200, 10, 10))
    save(tmp_path / "fear/b.png", gray(30))
    ds = load_split(tmp_path, "test", "imagefolder")
    assert ds.images.shape == (2, 3, 8, 8)  # one colour image -> RGB for all
    assert torch.equal(ds.images[0, :, 0, 0], torch.tensor([200, 10, 10], dtype=torch.uint8))  # surprise first
    assert "whole folder" in ds.source and ds.class_counts[CLASSES.index("surprise")] == 1
    assert load_split(tmp_path, "train").fingerprint() == ds.fingerprint()


def test_imagefolder_unknown_class_folder_names_it(tmp_path):
    save(tmp_path / "train/happy/a.png", gray(1))
    save(tmp_path / "train/bored/b.png", gray(2))
    with pytest.raises(UserError, match="'bored'.*accepted.*happiness"):
        load_split(tmp_path, "train")


# ---------------------------------------------------------------- image decoding, detection, bad input
def test_decode_keeps_order_and_native_size(tmp_path):
    paths = [save(tmp_path / "a.png", rgb(1, 2, 3, 5)), corrupt(tmp_path / "b.png"),
             save(tmp_path / "c.png", gray(7, 5))]
    out = decode_image_files(paths)
    assert out.kept == [0, 2] and out.images.shape == (2, 3, 5, 5) and out.images[1, :, 0, 0].tolist() == [7, 7, 7]
    assert out.skipped[0][0].endswith("b.png")


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "nope", "does not exist"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not a folder"),
    (lambda p: (p / "misc").mkdir() or p, "cannot tell the data layout.*rafdb"),
])
def test_bad_folders_are_user_errors(tmp_path, make, match):
    with pytest.raises(UserError, match=match):
        load_split(make(tmp_path), "train")


def test_bad_arguments_and_empty_data_are_user_errors(tmp_path):
    (tmp_path / "npz").mkdir()
    make_ferplus_npz(tmp_path / "npz")
    with pytest.raises(UserError, match="split"):
        load_split(tmp_path / "npz", "validation")
    with pytest.raises(UserError, match="data format"):
        load_split(tmp_path / "npz", "train", "csv")
    with pytest.raises(UserError, match="class folders"):
        load_split(tmp_path / "npz", "train", "imagefolder")
    (tmp_path / "empty/happy").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        load_split(tmp_path / "empty", "train")
    corrupt(tmp_path / "allbad/happy/x.png")
    with pytest.raises(UserError, match="could be read"):
        load_split(tmp_path / "allbad", "train")
    assert set(DATA_FORMATS) == {"ferplus-npz", "ferplus", "rafdb", "imagefolder"}


# ---------------------------------------------------------------- the real FER+ data
@pytest.mark.shared_data
@pytest.mark.skipif(not FERPLUS.is_dir(), reason="shared FER+ data absent")
def test_majority_rule_reproduces_shared_label_ids():
    with open(FERPLUS / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    votes = np.array([[int(r[f"votes_{v}"]) for v in VOTE_NAMES] for r in rows])
    expected = np.array([int(r["label_id"]) for r in rows])
    assert len(rows) == 31373
    np.testing.assert_array_equal(majority_labels(votes), expected)


@pytest.mark.shared_data
@pytest.mark.skipif(not FERPLUS.is_dir(), reason="shared FER+ data absent")
def test_shared_ferplus_splits_match_readme_counts():
    readme = {"train": [8733, 7284, 3022, 3136, 536, 116, 2098, 120],
              "val": [1180, 862, 348, 411, 60, 25, 289, 16],
              "test": [1083, 892, 382, 394, 86, 16, 269, 15]}
    assert detect_format(FERPLUS) == "ferplus-npz"
    for split, counts in readme.items():
        ds = load_split(FERPLUS, split, soft_labels=split == "val")
        assert ds.images.shape[1:] == (1, 48, 48) and ds.class_counts == counts
        if ds.soft_labels is not None:  # the majority class is always the soft labels' top class
            assert torch.equal(ds.soft_labels.argmax(1), ds.labels)
    assert sum(map(sum, readme.values())) == 31373
