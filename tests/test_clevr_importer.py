"""Import of the StoryGAN release, on a small release written here in exactly its layout."""
import os
import pickle
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.data import main as sv_data
from sv_data.clevr.importer import load_release_vectors
from sv_data.clevr.scene import condition_vectors, sample_scene, story_rng
from sv_data.errors import SvkitError
from sv_data.shards import ShardReader, validate


# ---- a Python 2 writer: np.save of a dict, as the release was made -------------------------------------------
def _py2_str(text: str | bytes) -> bytes:
    data = text.encode("latin1") if isinstance(text, str) else text
    return b"U" + bytes([len(data)]) + data if len(data) < 256 else b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value: int) -> bytes:
    return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)


def _py2_dtype(code: str, order: str, flags: int) -> bytes:
    return (b"cnumpy\ndtype\n" + _py2_str(code) + _py2_int(0) + _py2_int(1) + b"\x87R"
            + b"(" + _py2_int(3) + _py2_str(order) + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(flags) + b"tb")


def _py2_array(shape: tuple, dtype: bytes, data: bytes) -> bytes:
    shape_pickle = b"(" + b"".join(_py2_int(n) for n in shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85" + _py2_str("b")
            + b"\x87R" + b"(" + _py2_int(1) + shape_pickle + dtype + b"\x89" + data + b"tb")


def _py2_pickle(value) -> bytes:
    if isinstance(value, str):
        return _py2_str(value)
    if isinstance(value, dict):
        return b"}(" + b"".join(_py2_pickle(k) + _py2_pickle(v) for k, v in value.items()) + b"u"
    if isinstance(value, np.ndarray) and value.dtype == np.float64:
        return _py2_array(value.shape, _py2_dtype("f8", "<", 0), _py2_str(value.tobytes()))
    raise TypeError(type(value))


def write_release_dict(path, vectors: dict) -> None:
    """np.save(path, vectors) as Python 2 did it: an NPY file of a 0-d object array, pickled at protocol 2."""
    pickled = b"\x80\x02" + _py2_array((), _py2_dtype("O8", "|", 63), b"]" + _py2_pickle(vectors) + b"a") + b"."
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + pickled)


def write_release(root, stories=range(10)):
    """Frames (320x240 RGBA PNG) and CLEVR_dict.npy of ``stories``; returns {index: (4, 75) vectors}."""
    images = root / "images"
    images.mkdir()
    vectors, by_story = {}, {}
    for i in stories:
        by_story[i] = condition_vectors(sample_scene(story_rng(11, "train", i, 0))).astype(np.float64)
        rng = np.random.default_rng(i)
        for f in range(1, 5):
            rgba = rng.integers(0, 256, (240, 320, 4), dtype=np.uint8)
            rgba[..., 3] = 255
            cv2.imwrite(str(images / f"CLEVR_new_{i:06d}_{f}.png"), rgba)
            vectors[f"CLEVR_new_{i:06d}_{f}.png"] = by_story[i][f - 1]
    write_release_dict(root / "CLEVR_dict.npy", vectors)
    return images, root / "CLEVR_dict.npy", by_story


def test_the_written_dict_is_what_numpy_reads_as_the_release(tmp_path):
    _, dict_path, by_story = write_release(tmp_path, range(2))
    loaded = np.load(dict_path, allow_pickle=True, encoding="latin1").item()  # how StoryGAN's loader reads it
    np.testing.assert_array_equal(loaded["CLEVR_new_000001_3.png"], by_story[1][2])
    mine = load_release_vectors(dict_path)
    assert set(mine) == {f"CLEVR_new_{i:06d}_{f}" for i in range(2) for f in range(1, 5)}
    np.testing.assert_array_equal(mine["CLEVR_new_000001_3"], by_story[1][2])


def test_import_makes_valid_shards_matching_the_release(tmp_path):
    images, dict_path, by_story = write_release(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(sv_data, ["import-storygan-clevr", "--images", str(images), "--dict", str(dict_path),
                                          "--out", str(out), "--train", "2:8", "--test", "8:10", "--quiet"])
    assert result.exit_code == 0, result.output
    assert validate(out / "train.h5") == [] and validate(out / "test.h5") == []
    with ShardReader(out / "train.h5") as shard:
        s = shard.read_stories(range(len(shard)))
    assert s.story_ids == [f"train-{i:06d}" for i in range(2, 8)]
    assert s.extra["source_index"].tolist() == list(range(2, 8))
    for j, i in enumerate(range(2, 8)):
        np.testing.assert_array_equal(s.conditions[j], by_story[i].astype(np.float32))
        frame = cv2.imread(str(images / f"CLEVR_new_{i:06d}_2.png"))[..., ::-1]
        np.testing.assert_array_equal(s.images[j, 1], cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA))
        scene = sample_scene(story_rng(11, "train", i, 0))
        assert s.extra["shape"][j].tolist() == [o.shape for o in scene.objects]
        assert s.extra["color"][j].tolist() == [o.color for o in scene.objects]
        np.testing.assert_allclose(s.extra["position"][j], [o.position for o in scene.objects], rtol=1e-6)
        for t, text in enumerate(s.texts[j]):
            assert " ".join(scene.objects[t].words()) in text
        assert s.labels[j].sum(axis=1).tolist()[0] == 4 and (np.diff(s.labels[j].astype(int), axis=0) >= 0).all()


class Smuggler:
    def __reduce__(self):
        return os.system, ("touch smuggled",)


@pytest.mark.parametrize("wrap_in_npy", [False, True])
def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch, wrap_in_npy):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"CLEVR_new_000000_1.png": Smuggler()}, protocol=2)
    path = tmp_path / "CLEVR_dict.npy"
    if wrap_in_npy:
        header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(117) + "\n"
        payload = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
    path.write_bytes(payload)
    with pytest.raises(SvkitError, match=r"refused: the pickle asks for posix\.system"):
        load_release_vectors(path)
    (tmp_path / "images").mkdir()
    result = CliRunner().invoke(sv_data, ["import-storygan-clevr", "--images", str(tmp_path / "images"),
                                          "--dict", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "refused" in result.output
    assert not (tmp_path / "smuggled").exists()


def test_missing_frames_and_bad_ranges_are_clear_errors(tmp_path):
    images, dict_path, _ = write_release(tmp_path, range(3))
    (images / "CLEVR_new_000001_4.png").unlink()
    run = lambda *extra: CliRunner().invoke(sv_data, ["import-storygan-clevr", "--images", str(images), "--dict",
                                                      str(dict_path), "--out", str(tmp_path / "o"), *extra])
    result = run("--train", "0:2", "--test", "2:3")
    assert result.exit_code == 2 and "CLEVR_new_000001_4.png: missing (1 frames" in result.output
    result = run("--train", "5:2")
    assert result.exit_code == 2 and "--train must have 0 <= START <= STOP" in result.output
    result = run("--train", "a:b")
    assert result.exit_code == 2 and "--train must be START:STOP" in result.output
