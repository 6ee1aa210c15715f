"""FERPlus reader: the real file formats, each cleaning rule, each malformed-row kind, splits, orientation."""
import os

import numpy as np
import pytest

from cmemo_jax.constants import EMOTIONS
from cmemo_jax.data import ferplus

FER_HEADER = "emotion,pixels,Usage"
NEW_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
HAPPY = "0,10,0,0,0,0,0,0,0,0"   # a clean, unanimous vote row


def pixels_of(seed: int) -> np.ndarray:
    """A distinct uint8 [48, 48] test image per seed."""
    return np.random.default_rng(seed).integers(0, 256, (48, 48)).astype(np.uint8)


def pixel_text(image: np.ndarray) -> str:
    """fer2013.csv's pixel field: the 2304 values row-major, space-separated."""
    return " ".join(str(int(v)) for v in np.asarray(image).reshape(-1))


def write_pair(folder, rows, fer_extra=(), new_extra=(), newline="\n"):
    """Writes fer2013.csv + fer2013new.csv in the release's formats; returns their paths.

    rows: (usage, image name, 'v0,...,v9' votes, pixel text or uint8 [48, 48] image) per row;
    fer_extra / new_extra: raw lines appended to one file only (to make the row counts differ).
    """
    fer_lines, new_lines = [FER_HEADER], [NEW_HEADER]
    for k, (usage, name, votes, pixels) in enumerate(rows):
        text = pixels if isinstance(pixels, str) else pixel_text(pixels)
        fer_lines.append(f"{k % 7},{text},{usage}")   # the old FER2013 label: read past
        new_lines.append(f"{usage},{name},{votes}")
    fer_lines += list(fer_extra)
    new_lines += list(new_extra)
    fer_path = os.path.join(folder, ferplus.FER2013_FILE)
    new_path = os.path.join(folder, ferplus.FERPLUS_FILE)
    for path, lines in ((fer_path, fer_lines), (new_path, new_lines)):
        with open(path, "w", newline="") as fh:
            fh.write(newline.join(lines) + newline)
    return fer_path, new_path


# (votes as in fer2013new.csv, expected cleaned votes or None if dropped, label or reason fragment),
# worked out by hand from the rules: counts <= 1 -> 0; drop if unknown/NF outvotes every emotion,
# if 3+ emotions tie for the top, or if the tied top holds <= 50 % of the cleaned votes.
CLEANING_CASES = [
    ("0,10,0,0,0,0,0,0,0,0", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 1),          # unanimous happiness
    ("1,6,0,0,0,0,0,1,1,1", [0, 6, 0, 0, 0, 0, 0, 0, 0, 0], 1),            # single votes are noise
    ("0,0,0,0,0,0,0,7,0,3", [0, 0, 0, 0, 0, 0, 0, 7, 0, 3], 7),            # contempt, 7/10 > 50 %
    ("0,0,4,4,0,0,0,0,1,1", [0, 0, 4, 4, 0, 0, 0, 0, 0, 0], 2),            # 2-way tie: first emotion
    ("4,0,0,1,3,2,0,0,0,0", None, "4 of 9 votes"),                     # 4/9 <= 50 %
    ("2,0,0,0,0,0,0,0,6,2", None, "top vote is unknown"),
    ("0,0,0,0,0,0,0,0,0,10", None, "top vote is NF"),
    ("0,4,0,0,0,0,0,0,4,2", None, "4 of 10 votes"),                    # ties unknown: 50 % rule
    ("3,3,3,0,0,0,0,0,0,1", None, "3 emotions tie"),
    ("0,0,3,3,0,0,0,0,3,3", None, "6 of 12 votes"),                    # exactly 50 %: dropped
    ("1,1,1,1,1,1,1,1,1,1", None, "no votes left"),
]


@pytest.mark.parametrize("votes, cleaned, outcome", CLEANING_CASES)
def test_clean_votes_rules(votes, cleaned, outcome):
    got, reason = ferplus.clean_votes([int(v) for v in votes.split(",")])
    assert got.dtype == np.float32 and got.shape == (10,)
    if cleaned is None:
        assert reason is not None and outcome in reason
    else:
        assert reason is None
        np.testing.assert_array_equal(got, cleaned)


def test_read_applies_cleaning_per_row(tmp_path):
    rows = [("Training", f"fer{k:07d}.png", votes, pixels_of(k))
            for k, (votes, _, _) in enumerate(CLEANING_CASES)]
    rows.append(("Training", "", HAPPY, pixels_of(99)))   # no image name: FERPlus removed it
    data = ferplus.read_ferplus(*write_pair(tmp_path, rows))

    kept = [k for k, case in enumerate(CLEANING_CASES) if case[1] is not None]
    train = data["train"]
    np.testing.assert_array_equal(train.row, kept)
    np.testing.assert_array_equal(train.votes, [CLEANING_CASES[k][1] for k in kept])
    np.testing.assert_array_equal(train.label, [CLEANING_CASES[k][2] for k in kept])
    np.testing.assert_array_equal(train.image[..., 0], [pixels_of(k) for k in kept])
    assert train.image.dtype == np.uint8 and train.image.shape == (len(kept), 48, 48, 1)
    assert train.votes.dtype == np.float32 and train.label.dtype == np.int32
    assert train.row.dtype == np.int64

    dropped = [k for k in range(len(rows)) if k not in kept]
    assert [r for r, _ in data.skipped] == dropped
    assert data.dropped_by_cleaning == len(dropped) and data.num_malformed == 0
    reasons = dict(data.skipped)
    assert "no Image name" in reasons[len(rows) - 1]
    for k in dropped[:-1]:
        assert CLEANING_CASES[k][2] in reasons[k]
        assert reasons[k].startswith(f"fer2013new.csv row {k}:")


def test_splits_follow_usage(tmp_path):
    usages = ["Training", "PublicTest", "PrivateTest", "Training", "PrivateTest"]
    rows = [(u, f"fer{k:07d}.png", HAPPY, pixels_of(k)) for k, u in enumerate(usages)]
    data = ferplus.read_ferplus(*write_pair(tmp_path, rows, newline="\r\n"))
    np.testing.assert_array_equal(data["train"].row, [0, 3])
    np.testing.assert_array_equal(data["validation"].row, [1])
    np.testing.assert_array_equal(data["test"].row, [2, 4])
    for split in ferplus.SPLITS:
        np.testing.assert_array_equal(data[split].image[..., 0], [pixels_of(k) for k in data[split].row])
    assert data.skipped == []


def test_empty_split_has_typed_arrays(tmp_path):
    data = ferplus.read_ferplus(*write_pair(tmp_path, [("Training", "a.png", HAPPY, pixels_of(0))]))
    test = data["test"]
    assert len(test) == 0
    assert test.image.shape == (0, 48, 48, 1) and test.image.dtype == np.uint8
    assert test.votes.shape == (0, 10) and test.label.dtype == np.int32


def test_image_is_row_major(tmp_path):
    r, c = np.mgrid[0:48, 0:48]
    down = (5 * r).astype(np.uint8)      # brightens towards the bottom
    across = (5 * c).astype(np.uint8)    # brightens towards the right
    # Written explicitly in the file's order: value k is pixel (row k // 48, column k % 48).
    down_text = " ".join(str(5 * (k // 48)) for k in range(2304))
    rows = [("Training", "a.png", HAPPY, down_text), ("Training", "b.png", HAPPY, across)]
    image = ferplus.read_ferplus(*write_pair(tmp_path, rows))["train"].image[..., 0]
    np.testing.assert_array_equal(image[0], down)
    np.testing.assert_array_equal(image[1], across)
    assert image[0][0, 47] == 0 and image[0][47, 0] == 235   # top row dark, bottom row bright


def test_malformed_rows_are_skipped_and_good_rows_kept(tmp_path):
    good = pixel_text(pixels_of(0))
    rows = [
        ("Training", "r0.png", HAPPY, good),
        ("Training", "r1.png", HAPPY, " ".join(["7"] * 2303)),                  # one pixel short
        ("Training", "r2.png", HAPPY, good.replace(" ", " x ", 1)),             # non-numeric pixel
        ("Training", "r3.png", HAPPY, "256 " + " ".join(["7"] * 2303)),         # out of 0-255
        ("Training", "r4.png", HAPPY, "12.5 " + " ".join(["7"] * 2303)),        # not an integer
        ("Training", "r5.png", "0,ten,0,0,0,0,0,0,0,0", good),                  # non-numeric vote
        ("Training", "r6.png", "0,10,0,0,0,0,-2,0,0,0", good),                  # negative vote
        ("PublicTest", "r7.png", HAPPY, good),
        ("Unused", "r8.png", HAPPY, good),                                      # unknown Usage
        ("PrivateTest", "r9.png", HAPPY, good),
        ("PrivateTest", "r10.png", HAPPY, good),
    ]
    fer_path, new_path = write_pair(tmp_path, rows)
    lines = open(new_path).read().splitlines()
    lines[1 + 7] = lines[1 + 7].replace("PublicTest", "PrivateTest")   # Usage mismatch at row 7
    lines[1 + 9] = lines[1 + 9].rsplit(",", 1)[0]                      # row 9 lacks its NF field
    with open(new_path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    fer_lines = open(fer_path).read().splitlines()
    fer_lines[1 + 10] = f"{good},PrivateTest"                          # row 10 lacks its emotion
    with open(fer_path, "w") as fh:
        fh.write("\n".join(fer_lines) + "\n")

    data = ferplus.read_ferplus(fer_path, new_path)
    np.testing.assert_array_equal(data["train"].row, [0])
    assert len(data["validation"]) == 0 and len(data["test"]) == 0
    assert data.dropped_by_cleaning == 0 and data.num_malformed == 10
    reasons = dict(data.skipped)
    assert sorted(reasons) == list(range(1, 11))
    expected = {
        1: ("fer2013.csv row 1:", "2303 pixel values, expected 2304"),
        2: ("fer2013.csv row 2:", "not all integers"),
        3: ("fer2013.csv row 3:", "outside 0-255 (min 7, max 256)"),
        4: ("fer2013.csv row 4:", "not all integers"),
        5: ("fer2013new.csv row 5:", "happiness='ten'"),
        6: ("fer2013new.csv row 6:", "negative"),
        7: ("row 7: Usage 'PublicTest' in fer2013.csv but 'PrivateTest' in fer2013new.csv", ""),
        8: ("fer2013.csv row 8:", "unknown Usage 'Unused'"),
        9: ("fer2013new.csv row 9 (line 11):", "11 fields, the header has 12"),
        10: ("fer2013.csv row 10 (line 12):", "2 fields, the header has 3"),
    }
    for row, (start, fragment) in expected.items():
        assert reasons[row].startswith(start), reasons[row]
        assert fragment in reasons[row] and "\n" not in reasons[row]


def test_out_of_range_pixels_named():
    with pytest.raises(ValueError, match="outside 0-255"):
        ferplus.parse_pixels("256 " + " ".join(["7"] * 2303))
    with pytest.raises(ValueError, match="no pixel values"):
        ferplus.parse_pixels("   ")


@pytest.mark.parametrize("longer", ["fer", "new"])
def test_different_row_counts_skip_the_unpaired_rows(tmp_path, longer):
    rows = [("Training", f"r{k}.png", HAPPY, pixels_of(k)) for k in range(3)]
    extra_fer = [f"0,{pixel_text(pixels_of(7))},Training"] if longer == "fer" else []
    extra_new = ["Training,r3.png," + HAPPY, "Training,r4.png," + HAPPY] if longer == "new" else []
    data = ferplus.read_ferplus(*write_pair(tmp_path, rows, extra_fer, extra_new))
    np.testing.assert_array_equal(data["train"].row, [0, 1, 2])
    if longer == "fer":
        assert data.skipped == [(3, "fer2013new.csv has no row 3: fer2013.csv has more rows")]
    else:
        assert [r for r, _ in data.skipped] == [3, 4]
        assert all(reason.startswith("fer2013.csv has no row") for _, reason in data.skipped)
    assert data.dropped_by_cleaning == 0


@pytest.mark.parametrize("which, content", [
    ("fer", "Usage,Image name,neutral\nTraining,a.png,3\n"),       # the other file's header
    ("fer", ""),                                                   # empty
    ("new", "emotion,pixels,Usage\n0,1 2 3,Training\n"),
    ("new", "\x89PNG\r\n\x1a\n\x00\x00binary junk"),
])
def test_not_a_ferplus_csv_is_one_line_error(tmp_path, which, content):
    fer_path, new_path = write_pair(tmp_path, [("Training", "a.png", HAPPY, pixels_of(0))])
    bad = fer_path if which == "fer" else new_path
    with open(bad, "w", newline="") as fh:
        fh.write(content)
    with pytest.raises(ValueError) as err:
        ferplus.read_ferplus(fer_path, new_path)
    msg = str(err.value)
    assert os.path.basename(bad) in msg and "\n" not in msg


def test_load_ferplus_finds_files_and_names_missing_ones(tmp_path):
    write_pair(tmp_path, [("PublicTest", "a.png", HAPPY, pixels_of(3))])
    data = ferplus.load_ferplus(str(tmp_path))
    np.testing.assert_array_equal(data["validation"].image[0, ..., 0], pixels_of(3))

    os.remove(tmp_path / ferplus.FERPLUS_FILE)
    with pytest.raises(FileNotFoundError) as err:
        ferplus.load_ferplus(str(tmp_path))
    assert "fer2013new.csv" in str(err.value) and str(tmp_path) in str(err.value)
    assert "fer2013.csv " not in str(err.value).split(" in ")[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ferplus.load_ferplus(str(tmp_path / "nowhere"))


def test_vote_distribution():
    votes = np.array([[0, 6, 0, 0, 0, 0, 0, 0, 0, 4],     # NF votes are not part of the target
                      [2, 0, 2, 0, 0, 0, 0, 4, 3, 0]], np.float32)
    dist = ferplus.vote_distribution(votes)
    assert dist.dtype == np.float32 and dist.shape == (2, len(EMOTIONS))
    np.testing.assert_allclose(dist, [[0, 1, 0, 0, 0, 0, 0, 0],
                                      [0.25, 0, 0.25, 0, 0, 0, 0, 0.5]])
    np.testing.assert_allclose(ferplus.vote_distribution(votes[:, :8]), dist)
    with pytest.raises(ValueError, match="no emotion votes"):
        ferplus.vote_distribution([[0, 0, 0, 0, 0, 0, 0, 0, 5, 5]])
    with pytest.raises(ValueError, match=r"\[n, 10\]"):
        ferplus.vote_distribution(np.ones((2, 9)))
