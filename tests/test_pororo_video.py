"""Frame sampling from real videos written by the test (sv_data.pororo.video)."""
from __future__ import annotations

import numpy as np
import pytest
from test_pororo_media import coded_frame, damaged_copy, read_code, write_video

from sv_data.pororo import video as video_module
from sv_data.pororo.video import ClipRequest, sample_video

import cv2  # noqa: E402  (isort: skip; after sv_data.pororo.video, which quietens FFmpeg)

FPS = 10


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".gif"])
def test_every_sampled_frame_lies_inside_its_clip(tmp_path, suffix):
    path = write_video(tmp_path / f"episode{suffix}", frames=80, fps=FPS, video=3)
    ranges = [(0.0, 1.5), (1.5, 3.2), (3.2, 3.35), (2.0, 6.0), (6.0, 8.0)]  # one overlaps two others
    requests = [ClipRequest(f"ep/{i}", start, end) for i, (start, end) in enumerate(ranges)]
    clips = sample_video(path, requests, frames_per_clip=4, image_size=24, seed=7)
    for (start, end), clip in zip(ranges, clips):
        assert clip.problem is None, clip.problem
        codes = [read_code(image) for image in clip.images]
        assert all(video == 3 for video, _ in codes)
        frames = [index for _, index in codes]
        assert frames == clip.frame_index.tolist()
        assert all(start <= f / FPS < end + 1e-9 for f in frames), (start, end, frames)
        np.testing.assert_allclose(clip.frame_time, clip.frame_index / FPS, atol=1e-6)
        assert frames[: len(set(frames))] == sorted(set(frames))  # time order, then repeats if too few
        assert 0 <= clip.primary < 4
    # A clip of 2 frames (3.2-3.35 s) fills its 4 places by repeating them; the others have 4 distinct frames.
    assert sorted(set(clips[2].frame_index.tolist())) == [32, 33]
    assert all(len(set(c.frame_index.tolist())) == 4 for i, c in enumerate(clips) if i != 2)


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    path = write_video(tmp_path / "v.avi", frames=200, fps=FPS)
    requests = [ClipRequest(f"ep/{i}", 2.0 * i, 2.0 * (i + 1)) for i in range(10)]

    def frames(seed):
        return [c.frame_index.tolist() for c in sample_video(path, requests, 1, 16, seed)]

    assert frames(1) == frames(1)
    assert frames(1) != frames(2)
    # The choice depends only on (seed, clip): sampling one clip alone gives the same frame as in company.
    alone = sample_video(path, [requests[4]], 1, 16, 1)[0].frame_index.tolist()
    assert alone == frames(1)[4]


def test_whole_file_clips_of_gifs(tmp_path):
    gif = write_video(tmp_path / "3.gif", frames=23, fps=FPS, video=9)
    (clip,) = sample_video(gif, [ClipRequest("ep/3")], frames_per_clip=23, image_size=16, seed=0)
    assert clip.problem is None
    assert [read_code(im) for im in clip.images] == [(9, i) for i in range(23)]


def test_bad_videos_and_time_ranges_are_named(tmp_path):
    good = write_video(tmp_path / "good.avi", frames=50, fps=FPS)
    clips = sample_video(good, [ClipRequest("a", 7.0, 9.0), ClipRequest("b", 4.0, 6.5), ClipRequest("c", 1.01, 1.05),
                                ClipRequest("d", 0.0, 5.0)], 1, 16, 0)
    reasons = [c.problem for c in clips]
    assert reasons[0].startswith("time range outside the video: the clip starts at 7 s")
    assert reasons[1].startswith("time range outside the video: the clip ends at 6.5 s")
    assert reasons[2] == "empty time range: 1.01-1.05 s holds no frame"
    assert reasons[3] is None

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert sample_video(junk, [ClipRequest("x")], 1, 16, 0)[0].problem.startswith("cannot open video")

    for name in ("cut.avi", "cut.gif"):
        cut = damaged_copy(write_video(tmp_path / f"whole-{name}", frames=60, fps=FPS), tmp_path / name, 0.5)
        (clip,) = sample_video(cut, [ClipRequest("y")], 1, 16, 0)
        assert clip.problem.startswith("truncated video: decoding stops after"), (name, clip.problem)


def test_blank_frames_are_never_drawn(tmp_path):
    path = tmp_path / "fade.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (96, 72))
    for index in range(40):  # black but for frames 12 and 30
        writer.write(coded_frame(index, video=4) if index in (12, 30) else np.zeros((72, 96, 3), np.uint8))
    writer.release()
    clips = sample_video(path, [ClipRequest("a", 0, 2.0), ClipRequest("b", 2.0, 4.0), ClipRequest("c", 0, 1.0)],
                         frames_per_clip=1, image_size=16, seed=0)
    assert [read_code(c.images[0]) for c in clips[:2]] == [(4, 12), (4, 30)]
    assert clips[2].problem == "blank clip: every frame is one flat colour"


def _same(a, b) -> bool:
    return a.problem is None and b.problem is None and a.frame_index.tolist() == b.frame_index.tolist() and \
        np.array_equal(a.images, b.images) and a.primary == b.primary


@pytest.mark.parametrize("suffix,start,stop", [(".mp4", 0.5, 0.6), (".avi", 0.55, None)])
def test_damage_part_way_costs_only_the_clips_after_it(tmp_path, suffix, start, stop):
    """Real damage (bytes zeroed inside an MPEG-4 file, an AVI cut off): decoding stops part-way; the clips that
    ended before keep exactly the frames the intact video gives them, the others are reported."""
    whole = write_video(tmp_path / f"whole{suffix}", frames=80, fps=FPS, video=6)
    damaged = damaged_copy(whole, tmp_path / f"damaged{suffix}", start, stop)
    requests = [ClipRequest(f"ep/{i}", float(i), i + 1.0) for i in range(8)]
    intact = sample_video(whole, requests, 2, 16, 0)
    clips = sample_video(damaged, requests, 2, 16, 0)
    kept = [c.problem is None for c in clips]
    first_lost = kept.index(False)
    assert 2 <= first_lost <= 6 and not any(kept[first_lost:]), [c.problem for c in clips]
    assert all(_same(c, i) for c, i in zip(clips[:first_lost], intact))
    assert all(c.problem.startswith(("truncated video", "damaged video")) for c in clips[first_lost:])


class _FailingRetrieve:
    """A real capture whose frame ``bad`` cannot be decoded (grab succeeds, retrieve fails), as FFmpeg does with
    some damaged packets."""

    def __init__(self, capture, bad: int):
        self.capture, self.bad, self.grabbed = capture, bad, -1

    def grab(self):
        self.grabbed += 1
        return self.capture.grab()

    def retrieve(self):
        return (False, None) if self.grabbed == self.bad else self.capture.retrieve()

    def __getattr__(self, name):
        return getattr(self.capture, name)


def test_an_undecodable_frame_costs_only_the_clips_that_drew_it(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.avi", frames=80, fps=FPS, video=7)
    requests = [ClipRequest(f"ep/{i}", float(i), i + 1.0) for i in range(8)] + [ClipRequest("whole")]
    intact = sample_video(path, requests, 2, 16, 0)
    real_open = video_module.open_video
    monkeypatch.setattr(video_module, "open_video", lambda p: _FailingRetrieve(real_open(p), bad=30))
    clips = sample_video(path, requests, 2, 16, 0)
    # Frame 30 is the first of clip 3 (3-4 s), which thus drew it; with seed 0 the whole-file clip passes over it.
    assert clips[3].problem == "damaged video: frame 30 cannot be decoded"
    assert all(_same(c, i) for n, (c, i) in enumerate(zip(clips, intact)) if n != 3)
