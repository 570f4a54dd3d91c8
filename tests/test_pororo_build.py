"""`sv-data build-pororo` end to end, on real videos and GIFs written by the test and on the real PororoQA
description file."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_pororo_media import pororoqa_descriptions, read_code, write_video

from cli.data import main as sv_data
from sv_data.pororo import builder
from sv_data.pororo.builder import PororoOptions, build_pororo
from sv_data.pororo.characters import PORORO_CHARACTERS, CharacterDetector
from sv_data.pororo.descriptions import read_descriptions
from sv_data.errors import SvkitError
from sv_data.shards import ShardReader, validate
from sv_data.torch_data import StoryDataset

FPS = 10
SIZE = 24
RANGES = [(0, 1.4), (1.4, 2.9), (2.9, 4.1), (4.1, 5.5), (5.5, 7), (7, 8.5), (8.5, 10)]
VIDEO_IDS = {"ep1.mp4": 1, "ep2.avi": 2, **{f"ep3/{n}.gif": 10 + n for n in range(1, 8)}}


def _text(episode: str, clip: int) -> str:
    a, b = PORORO_CHARACTERS[clip % 9], PORORO_CHARACTERS[(clip + len(episode)) % 9]
    return f"In {episode}, {a.lower()} talks to {b.upper()} about clip {clip}."


@pytest.fixture(scope="module")
def show(tmp_path_factory) -> Path:
    """A little show in the table layout: two long videos cut into clips by time, one episode of GIF clips, and
    an episode whose first five clips are bad in each way a description file or a video can be."""
    root = tmp_path_factory.mktemp("show")
    videos = root / "videos"
    write_video(videos / "ep1.mp4", 100, FPS, video=1)
    write_video(videos / "ep2.avi", 100, FPS, video=2)
    for n in range(1, 8):
        write_video(videos / "ep3" / f"{n}.gif", 12, FPS, video=10 + n)
    (videos / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    whole = write_video(root / "whole.avi", 60, FPS).read_bytes()
    (videos / "cut.avi").write_bytes(whole[: len(whole) // 2])

    rows = [("episode", "clip", "video", "start", "end", "description", "characters")]
    for episode, video in (("ep1", "ep1.mp4"), ("ep2", "ep2.avi")):
        rows += [(episode, c, video, s, e, _text(episode, c), "") for c, (s, e) in enumerate(RANGES, 1)]
    rows += [("ep3", n, f"ep3/{n}.gif", "", "", _text("ep3", n), "") for n in range(1, 8)]
    rows.append(("ep1", 2, "ep1.mp4", 1.4, 2.9, "A second description of the same clip.", ""))
    rows.append(("ep2", 3, "ep2.avi", 2.9, 4.1, "Someone we know.", "rody;Bob"))
    rows += [
        ("ep4", 1, "junk.mp4", "", "", "Corrupt.", ""),
        ("ep4", 2, "cut.avi", "", "", "Truncated.", ""),
        ("ep4", 3, "missing.mp4", "", "", "Unknown path.", ""),
        ("ep4", 4, "ep1.mp4", 20, 22, "After the end.", ""),
        ("ep4", 5, "ep1.mp4", 0, 1, "  ", ""),
    ]
    rows += [("ep4", c, "ep1.mp4", c - 6, c - 5, _text("ep4", c), "") for c in range(6, 11)]
    with open(root / "clips.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return root


def options(show: Path, out: Path, **overrides) -> PororoOptions:
    settings = dict(videos=show / "videos", descriptions=show / "clips.csv", out=out, image_size=SIZE,
                    frames_per_clip=3, split=(0.5, 0.25, 0.25), progress=False)
    return PororoOptions(**{**settings, **overrides})


def read_all(out: Path) -> dict[str, dict[str, np.ndarray]]:
    shards = {}
    for path in sorted(out.glob("*.h5")):
        with ShardReader(path) as reader:
            batch = reader.read_stories(range(len(reader)))
        shards[path.stem] = {"images": batch.images, "labels": batch.labels, "conditions": batch.conditions,
                             "texts": np.array(batch.texts), "ids": np.array(batch.story_ids), **batch.extra}
    return shards


@pytest.fixture(scope="module")
def built(show, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "out"
    summary = build_pororo(options(show, out))
    return out, summary


def test_stories_hold_the_frames_texts_and_labels_of_their_clips(show, built):
    out, summary = built
    table = {(c.episode, c.number): c for c in read_descriptions(show / "clips.csv").clips}
    shards = read_all(out)
    assert set(shards) == {"train", "val", "test"}
    assert sum(summary.stories.values()) == 3 + 3 + 3 + 1  # ep4 keeps only its clips 6-10
    detector = CharacterDetector(PORORO_CHARACTERS)
    for split, shard in shards.items():
        assert validate(out / f"{split}.h5") == []
        for i, story_id in enumerate(shard["ids"]):
            episode = shard["episode"][i]
            assert story_id == f"{episode}/{shard['clip'][i][0]}"
            for t, number in enumerate(shard["clip"][i]):
                clip = table[(episode, int(number))]
                video = shard["video"][i][t]
                assert video == clip.video
                start = clip.start or 0.0
                end = np.inf if clip.end is None else clip.end
                pool_frames = []
                for image, index in zip(shard["frame_pool"][i, t], shard["frame_pool_index"][i, t]):
                    source, frame = read_code(image)
                    assert source == VIDEO_IDS.get(video, 1) and frame == index
                    assert start <= frame / FPS < end
                    pool_frames.append(frame)
                assert read_code(shard["images"][i, t])[1] == shard["frame_index"][i, t] in pool_frames
                assert shard["frame_time"][i, t] == pytest.approx(shard["frame_index"][i, t] / FPS)
                assert shard["texts"][i, t] == clip.descriptions[0]
                assert tuple(d for d in shard["descriptions"][i, t] if d) == clip.descriptions
                expected = detector.detect(clip.descriptions) if clip.characters is None else \
                    detector.from_names(clip.characters)[0]
                assert shard["labels"][i, t].tolist() == expected.tolist()
    everything = {k: np.concatenate([s[k] for s in shards.values()]) for k in ("texts", "conditions", "labels")}
    norms = np.linalg.norm(everything["conditions"], axis=-1)
    np.testing.assert_allclose(norms, 1, atol=1e-4)
    texts, vectors = everything["texts"].reshape(-1), everything["conditions"].reshape(-1, 384)
    same = texts[:, None] == texts[None, :]
    close = np.abs(vectors[:, None] - vectors[None, :]).max(-1) < 1e-6
    assert (same == close).all()
    # the override: "rody;Bob" gives Rody alone; the descriptions named Loopy/Crong... but not Rody
    assert everything["labels"].reshape(-1, 9).any(axis=0)[PORORO_CHARACTERS.index("Rody")]


def test_episodes_never_straddle_splits(built):
    out, summary = built
    shards = read_all(out)
    episodes = {split: set(shard["episode"]) for split, shard in shards.items()}
    assert episodes["train"].isdisjoint(episodes["val"]) and episodes["train"].isdisjoint(episodes["test"])
    assert episodes["val"].isdisjoint(episodes["test"])
    assert set().union(*episodes.values()) == {"ep1", "ep2", "ep3", "ep4"}
    assert {k: len(s["ids"]) for k, s in shards.items()} == summary.stories


def test_every_bad_input_is_reported(built):
    out, summary = built
    with open(out / "report.tsv", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("# pororo-sv: 10 stories")
    rows = list(csv.DictReader((line for line in lines if not line.startswith("#")), delimiter="\t"))
    found = {(r["skipped"], r["episode"], r["clip"]): r["reason"] for r in rows}
    assert found[("clip", "ep4", "1")].startswith("cannot open video")
    assert found[("clip", "ep4", "2")].startswith("truncated video")
    assert found[("clip", "ep4", "3")].startswith("video not found")
    assert found[("clip", "ep4", "4")].startswith("time range outside the video")
    assert found[("clip", "ep4", "5")] == "empty description"
    assert found[("character", "ep2", "3")].startswith("unknown character: 'Bob'")
    assert len(rows) == 6
    assert [r["line"] for r in rows if r["episode"] == "ep4"] == ["25", "26", "27", "28", "29"]
    line = summary.line()
    assert "skipped 5 clips" in line and "1 characters" in line and "report" in line
    assert "5 stories not made for want of a skipped clip" in line  # ep4's windows that start at clips 1-5
    assert not (out / "work").exists() and not (out / "parts").exists()


def test_rows_that_are_not_utf8_are_reported_and_the_rest_is_built(show, tmp_path):
    table = tmp_path / "latin1.csv"
    original = (show / "clips.csv").read_bytes()
    first = len(original.splitlines()) + 1  # the line of the first row added here
    added = [
        b"ep1,4,ep1.mp4,4.1,5.5,Caf\xe9 with Loopy.,",  # a second record of a clip: only the record is lost
        *(f'ep5,{c},ep1.mp4,{c - 1},{c},"{_text("ep5", c)}",'.encode() for c in range(1, 6)),
        b"ep5,6,ep1.mp4,5,6,Pororo d\xe9teste the snow.,",  # the only record of clip 6
        b"ep5,7,caf\xe9.mp4,,,Pororo.,",  # a video path that is not UTF-8
    ]
    table.write_bytes(original + b"\r\n".join(added) + b"\r\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(sv_data, [
        "build-pororo", "--videos", str(show / "videos"), "--descriptions", str(table), "--out", str(out),
        "--image-size", str(SIZE), "--split", "0.5,0.25,0.25", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    line, next_step = result.output.strip().splitlines()
    assert next_step == f"next: sv-model train {out / 'train.h5'}"
    # ep5 keeps the story of its clips 1-5; those starting at clips 2 and 3 would need clip 6 or 7
    assert line.startswith("pororo-sv: 11 stories") and "from 31 of 38 clips in 5 of 5 episodes" in line
    assert "skipped 7 clips (" in line and "not UTF-8 2" in line and "1 records (not UTF-8 1)" in line
    assert "7 stories not made for want of a skipped clip" in line

    text = (out / "report.tsv").read_bytes().decode("utf-8")  # UTF-8 throughout, the bad bytes shown as \xe9
    assert text.splitlines()[0] == f"# {line}"
    rows = list(csv.DictReader((r for r in text.splitlines() if not r.startswith("#")), delimiter="\t"))
    found = {(r["skipped"], r["line"], r["episode"], r["clip"]): (r["video"], r["reason"]) for r in rows}
    assert found[("record", str(first), "ep1", "4")] == ("ep1.mp4", "not UTF-8: byte 0xe9 in the description")
    assert found[("clip", str(first + 6), "ep5", "6")] == ("ep1.mp4", "not UTF-8: byte 0xe9 in the description")
    assert found[("clip", str(first + 7), "ep5", "7")] == ("caf\\xe9.mp4", "not UTF-8: in the video path")
    assert len(rows) == 6 + 3

    shards = read_all(out)
    stories = {i: (split, n) for split, shard in shards.items() for n, i in enumerate(shard["ids"])}
    assert set(stories) >= {"ep5/1", "ep1/1"} and not {"ep5/2", "ep5/3"} & set(stories)
    split, n = stories["ep1/1"]
    clip4 = shards[split]["descriptions"][n, 3]
    assert [d for d in clip4 if d] == [_text("ep1", 4)]  # the record that is not UTF-8 is not among them


def test_frame_pools_feed_random_frame_reading(built):
    out, _ = built
    dataset = StoryDataset(out / "train.h5", random_pool_frame=True)
    item = dataset[0]
    assert tuple(item["images"].shape) == (5, 3, SIZE, SIZE)
    with ShardReader(out / "train.h5") as reader:
        pool = reader.read("extra/frame_pool", [0])[0]
    for t in range(5):
        frame = item["images"][t].permute(1, 2, 0).numpy()
        assert any((frame == candidate).all() for candidate in pool[t])


def test_same_seed_same_dataset_whatever_the_workers(show, built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_pororo(options(show, again, workers=2))
    first, second = read_all(out), read_all(again)
    for split in first:
        for name in first[split]:
            np.testing.assert_array_equal(first[split][name], second[split][name], err_msg=f"{split} {name}")
    other = tmp_path / "other-seed"
    build_pororo(options(show, other, seed=1, frames_per_clip=1))
    seed1 = np.concatenate([s["frame_index"].reshape(-1) for s in read_all(other).values()])
    seed0 = np.concatenate([s["frame_index"].reshape(-1) for s in first.values()])
    assert sorted(seed1.tolist()) != sorted(seed0.tolist())


def test_an_interrupted_build_resumes_without_sampling_again(show, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "build", interrupt)  # Ctrl-C just as the stories are to be written
    with pytest.raises(KeyboardInterrupt):
        build_pororo(options(show, out))
    monkeypatch.undo()
    cached = sorted((out / "work" / "frames").glob("*.npz"))
    assert len(cached) == 2 + 7 + 2  # ep1.mp4, ep2.avi, the seven GIFs, junk.mp4 and cut.avi
    # Were the videos read again, this damage would now lose their clips: resuming uses the cached frames.
    originals = {name: (show / "videos" / name).read_bytes() for name in ("ep1.mp4", "ep2.avi")}
    try:
        for name in originals:
            (show / "videos" / name).write_bytes(b"no longer a video")
        summary = build_pororo(options(show, out))
    finally:
        for name, data in originals.items():
            (show / "videos" / name).write_bytes(data)
    assert sum(summary.stories.values()) == 10
    with pytest.raises(Exception, match="other options"):
        build_pororo(options(show, out, image_size=32))
    assert "already built" in build_pororo(options(show, out)).line()


def test_a_build_is_not_resumed_from_another_videos_folder(show, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "build", interrupt)  # the frames are sampled and cached, the stories not written
    with pytest.raises(KeyboardInterrupt):
        build_pororo(options(show, out))
    monkeypatch.undo()
    other = tmp_path / "other-videos"  # the same file names, other pictures: the cached frames must not be used
    shutil.copytree(show / "videos", other)
    write_video(other / "ep1.mp4", 100, FPS, video=30)
    command = ["build-pororo", "--videos", str(other), "--descriptions", str(show / "clips.csv"), "--out", str(out),
               "--image-size", str(SIZE), "--frames-per-clip", "3", "--split", "0.5,0.25,0.25", "--workers", "1",
               "--no-progress"]
    result = CliRunner().invoke(sv_data, command)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert f"holds a build with other options (videos differ, it was made from --videos " \
           f"{(show / 'videos').resolve().as_posix()})" in result.output
    assert not list(out.glob("*.h5"))

    link = tmp_path / "link"  # the same folder under another name is the same build
    link.symlink_to(show / "videos", target_is_directory=True)
    assert sum(build_pororo(options(show, out, videos=link)).stories.values()) == 10
    with pytest.raises(SvkitError, match="videos differ"):  # a complete build is not "already built" either
        build_pororo(options(show, out, videos=other))
    with ShardReader(out / "train.h5") as reader:
        assert reader.info.spec.build_config["videos"] == (show / "videos").resolve().as_posix()


def test_a_rebuild_in_the_same_process_reads_its_own_frames(show, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    build_pororo(options(show, out, frames_per_clip=1))
    shutil.rmtree(out)  # the same folder again, other frames: the sampled-frames files get the same names
    build_pororo(options(show, out, frames_per_clip=1, seed=1))
    build_pororo(options(show, fresh, frames_per_clip=1, seed=1))
    assert_same_shards(out, fresh)


def test_the_real_description_file_with_gifs_for_three_episodes(tmp_path):
    csv_path = pororoqa_descriptions()
    table = read_descriptions(csv_path)
    episodes = ["Pororo_ENGLISH1_1_ep1", "Pororo_ENGLISH1_1_ep2", "Pororo_ENGLISH2_1_ep3"]
    videos = tmp_path / "Scenes_Dialogues"
    clip_counts = {}
    for number, episode in enumerate(episodes):
        season = episode.rsplit("_ep", 1)[0]
        clips = [c for c in table.clips if c.episode == episode]
        clip_counts[episode] = len(clips)
        folder = videos / season / episode
        for clip in clips:
            write_video(folder / f"{clip.number}.gif", frames=6, fps=FPS, video=number + 1)
        (folder / f"{episode}.txt").write_text("the release keeps one non-GIF file in each episode folder")
    (videos / "Pororo_ENGLISH1_1" / episodes[0] / "7.gif").unlink()  # one clip's GIF is missing

    result = CliRunner().invoke(sv_data, ["build-pororo", "--videos", str(videos), "--descriptions", str(csv_path),
                                          "--out", str(tmp_path / "out"), "--image-size", str(SIZE),
                                          "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert csv_path.read_bytes()[:30] == b"Pororo_ENGLISH1_1_ep1,1,There "  # read, never changed
    expected = sum(n - 4 for n in clip_counts.values()) - 5  # the missing clip 7 takes 5 windows with it
    assert result.output.startswith(f"pororo-sv: {expected} stories")
    assert "180 episodes (episode without videos 180)" in result.output
    assert "; 5 stories not made for want of a skipped clip;" in result.output
    rows = (tmp_path / "out" / "report.tsv").read_text().splitlines()
    assert sum(r.startswith("episode\t") for r in rows) == 180
    assert any(r.startswith("clip\t") and "video not found" in r and "7.gif" in r for r in rows)
    shards = read_all(tmp_path / "out")
    assert sorted(len(set(s["episode"])) for s in shards.values()) == [1, 1, 1]
    by_clip = {(c.episode, c.number): c for c in table.clips}
    for shard in shards.values():
        for i, episode in enumerate(shard["episode"]):
            for t, number in enumerate(shard["clip"][i]):
                assert shard["texts"][i, t] == by_clip[(episode, int(number))].descriptions[0]
                assert shard["video"][i, t] == f"{episode.rsplit('_ep', 1)[0]}/{episode}/{number}.gif"
                assert read_code(shard["images"][i, t]) == (episodes.index(episode) + 1, shard["frame_index"][i, t])


def test_command_line_errors(show, tmp_path):
    runner = CliRunner()
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("episode,clip,description\nep1,1,Pororo.\n")
    result = runner.invoke(sv_data, ["build-pororo", "--videos", str(show / "videos"), "--descriptions",
                                     str(bad_csv), "--out", str(tmp_path / "o1"), "--no-progress"])
    assert result.exit_code == 2
    assert "bad.csv line 1: the header lacks the required column video" in result.output

    nothing = tmp_path / "nothing.csv"
    shutil.copy(show / "clips.csv", nothing)
    empty_videos = tmp_path / "no-videos"
    empty_videos.mkdir()
    result = runner.invoke(sv_data, ["build-pororo", "--videos", str(empty_videos), "--descriptions", str(nothing),
                                     "--out", str(tmp_path / "o2"), "--no-progress"])
    assert result.exit_code == 2
    assert "nothing usable is left" in result.output
    rows = (tmp_path / "o2" / "report.tsv").read_text().splitlines()
    assert sum(r.startswith("clip\t") and "video not found" in r for r in rows) == 30


def test_the_toy_show_builds_as_the_demo_would(tmp_path):
    from sv_data.pororo.toy import write_toy_show

    videos, table = write_toy_show(tmp_path, episodes=2, clips_per_episode=6)
    result = CliRunner().invoke(sv_data, ["build-pororo", "--videos", str(videos), "--descriptions", str(table),
                                          "--out", str(tmp_path / "toy-sv"), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pororo-sv: 4 stories (train 2, val 2) from 12 of 12 clips")
    for split in ("train", "val"):
        assert validate(tmp_path / "toy-sv" / f"{split}.h5") == []


def assert_same_shards(first: Path, second: Path) -> None:
    a, b = read_all(first), read_all(second)
    assert set(a) == set(b)
    for split in a:
        for name in a[split]:
            np.testing.assert_array_equal(a[split][name], b[split][name], err_msg=f"{split} {name}")


def test_a_ray_build_equals_the_local_build(show, built, tmp_path):
    out, summary = built
    on_ray = build_pororo(options(show, tmp_path / "ray", ray_address="local", workers=2))
    assert on_ray.line() == summary.line().replace(str(out), str(tmp_path / "ray"))
    assert_same_shards(out, tmp_path / "ray")
    assert not (tmp_path / "ray" / "work").exists()


def test_array_jobs_sample_their_share_of_the_videos_then_one_run_writes_the_stories(show, built, tmp_path):
    out = tmp_path / "array"
    command = ["build-pororo", "--videos", str(show / "videos"), "--descriptions", str(show / "clips.csv"),
               "--out", str(out), "--image-size", str(SIZE), "--frames-per-clip", "3", "--split", "0.5,0.25,0.25",
               "--workers", "1", "--no-progress"]
    runner = CliRunner()
    cached = []
    for index in (1, 0):  # any order, as a scheduler would run them
        result = runner.invoke(sv_data, command + ["--shard-index", str(index), "--num-shards", "2"])
        assert result.exit_code == 0, result.output
        assert f"job {index} of 2 has sampled its" in result.output
        assert "run the same command without --shard-index and --num-shards" in result.output
        assert not list(out.glob("*.h5"))
        cached.append(len(list((out / "work" / "frames").glob("*.npz"))))
    assert cached == [5, 11]  # 11 videos, sorted and dealt out: job 1 gets 5, job 0 the other 6
    result = runner.invoke(sv_data, command)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pororo-sv: 10 stories")
    assert_same_shards(built[0], out)


def test_sharding_options_go_together(show, tmp_path):
    result = CliRunner().invoke(sv_data, ["build-pororo", "--videos", str(show / "videos"), "--descriptions",
                                          str(show / "clips.csv"), "--out", str(tmp_path / "o"), "--shard-index",
                                          "0", "--no-progress"])
    assert result.exit_code == 2
    assert "--shard-index and --num-shards go together" in result.output
    assert not (tmp_path / "o").exists()
