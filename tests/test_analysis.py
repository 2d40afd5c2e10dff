"""mripkg.analysis: flattening and comparing result files."""

from mripkg.report.moved import flatten_numbers, moved_numbers


def test_flatten_numbers_keys_every_number_by_its_path():
    obj = {"a": {"b": 1, "c": [2.5, {"d": 3}]}, "flag": True, "name": "x", "none": None}
    assert flatten_numbers(obj) == {"a/b": 1.0, "a/c/0": 2.5, "a/c/1/d": 3.0}
    assert flatten_numbers([1, [2]]) == {"0": 1.0, "1/0": 2.0}
    assert flatten_numbers("text") == {}


def test_moved_numbers_pairs_before_and_after():
    before = {"m.json": {"psnr": 24.0, "drop": [1.0, 2.0]}, "old.json": {"x": 1}}
    after = {"m.json": {"psnr": 25.5, "drop": [1.0], "new": 7}}
    rows = {(r["file"], r["key"]): r for r in moved_numbers(before, after)}
    assert rows[("m.json", "psnr")]["change"] == 1.5
    assert rows[("m.json", "drop/0")]["change"] == 0.0
    gone = rows[("m.json", "drop/1")]
    assert gone["after"] is None and gone["change"] is None
    assert rows[("m.json", "new")]["before"] is None
    assert rows[("old.json", "x")]["after"] is None
    assert len(rows) == 5


def test_text_is_compared_only_when_asked():
    before = {"c.json": {"verdict": "partly", "v": 1}}
    after = {"c.json": {"verdict": "reproduced", "v": 1}}
    assert len(moved_numbers(before, after)) == 1
    rows = {r["key"]: r for r in moved_numbers(before, after, text=True)}
    assert rows["verdict"]["before"] == "partly" and rows["verdict"]["after"] == "reproduced"
    assert rows["verdict"]["change"] is None
