"""The pure logic of Pororo builds: description files, characters, story windows, splits, frame choice."""
from __future__ import annotations

import numpy as np
import pytest
from test_pororo_media import pororoqa_descriptions

from sv_data.pororo.characters import PORORO_CHARACTERS, CharacterDetector, parse_character_list
from sv_data.pororo.descriptions import PORORO_QA, TABLE, DescriptionsError, read_descriptions
from sv_data.pororo.sampling import FrameChooser
from sv_data.pororo.stories import episode_counts, parse_split, split_episodes, story_windows

# ----------------------------------------------------------------------------------------- the real PororoQA file


@pytest.fixture(scope="module")
def real():
    return read_descriptions(pororoqa_descriptions())


def test_the_real_description_file_as_released(real):
    assert real.layout == PORORO_QA
    assert real.records == 16_971
    assert len(real.clips) == 16_066
    assert len(real.episodes()) == 183
    assert real.problems == []
    windows, left_out = story_windows(real.episodes(), [True] * len(real.clips), length=5, stride=1)
    assert (len(windows), left_out) == (15_334, 0)
    assert all(len({real.clips[c].episode for c in w.clips}) == 1 for w in windows)
    # Quoted fields with line breaks: 16,971 records on 16,973 lines, and line numbers still right after them.
    assert sum("\n" in d for c in real.clips for d in c.descriptions) == 2
    assert max(c.line for c in real.clips) == 16_973
    first = real.clips[0]
    assert (first.episode, first.number, len(first.descriptions)) == ("Pororo_ENGLISH1_1_ep1", 1, 8)
    assert first.descriptions[0] == "There is a sea over the mountains covered by snow."


def test_splits_of_the_real_file_follow_the_balance_rule(real):
    detector = CharacterDetector(PORORO_CHARACTERS)
    labels = [detector.detect(c.descriptions) for c in real.clips]
    windows, _ = story_windows(real.episodes(), [True] * len(real.clips), 5, 1)
    episodes = list(real.episodes())
    row = {e: i for i, e in enumerate(episodes)}
    sums, frames = np.zeros((len(episodes), 9)), np.zeros(len(episodes))
    for w in windows:
        sums[row[w.episode]] += np.sum([labels[c] for c in w.clips], axis=0)
        frames[row[w.episode]] += 5
    result = split_episodes(episodes, sums, frames, (0.8, 0.1, 0.1), seed=0, tolerance=0.05)
    assert result.balanced and result.imbalance <= 0.05 and result.draws == 1
    counts = {s: sum(1 for v in result.assignment.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"train": 147, "val": 18, "test": 18}
    for label in range(9):
        values = [result.frequencies[s][label] for s in ("train", "val", "test")]
        assert max(values) - min(values) <= 0.05 + 1e-9
    again = split_episodes(episodes, sums, frames, (0.8, 0.1, 0.1), seed=0, tolerance=0.05)
    assert again.assignment == result.assignment
    other = split_episodes(episodes, sums, frames, (0.8, 0.1, 0.1), seed=1, tolerance=0.05)
    assert other.assignment != result.assignment


# ------------------------------------------------------------------------------------------- description tables


def write(tmp_path, text: str | bytes, name="descriptions.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_a_table_with_a_header(tmp_path):
    path = write(tmp_path, "\ufeffDescription,video,clip,episode,start,end,characters\n"
                           '"Loopy bakes, Eddy waits.",a.mp4,2,ep1,1.5,4,Loopy;Eddy\n'
                           '"Crong laughs\nloudly.",a.mp4,1,ep1,0,1.5,\n'
                           "A second text.,a.mp4,2,ep1,1.5,4,Poby\n"
                           "Harry flies.,b.mkv,1,ep10,,,\n"
                           "Harry lands.,c.webm,1,ep2,,,\n")
    table = read_descriptions(path)
    assert table.layout == TABLE and table.records == 5 and table.problems == []
    assert [c.key for c in table.clips] == ["ep1/1", "ep1/2", "ep2/1", "ep10/1"]  # natural order of episodes
    crong, loopy = table.clips[:2]
    assert crong.descriptions == ("Crong laughs\nloudly.",) and crong.line == 3
    assert (crong.video, crong.start, crong.end, crong.characters) == ("a.mp4", 0.0, 1.5, None)
    assert loopy.descriptions == ("Loopy bakes, Eddy waits.", "A second text.")
    assert loopy.characters == ("Eddy", "Loopy", "Poby")
    assert table.clips[3].start is None and table.clips[3].end is None


def test_a_header_without_a_required_column_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, "episode,clip,description\nep1,1,Pororo skis.\n")
    # With a header the file is a table: the video column is required; no header at all is PororoQA's layout.
    with pytest.raises(DescriptionsError, match=r"line 1: the header lacks the required column video"):
        read_descriptions(path)
    path = write(tmp_path, "episode,video\nep1,a.mp4\n")
    with pytest.raises(DescriptionsError, match=r"line 1: .*required columns clip, description"):
        read_descriptions(path)


def test_unusable_files_name_the_line(tmp_path):
    with pytest.raises(DescriptionsError, match=r"line 3: not valid CSV"):
        read_descriptions(write(tmp_path, 'ep1,1,ok\nep1,2,ok\nep1,3,"never closed\nep1,4,x\n'))
    with pytest.raises(DescriptionsError, match=r"line 1: the file is UTF-16"):
        read_descriptions(write(tmp_path, "ep1,1,Pororo\n".encode("utf-16")))
    with pytest.raises(DescriptionsError, match=r"line 1: neither a header"):
        read_descriptions(write(tmp_path, "just some text\n"))
    with pytest.raises(DescriptionsError, match="holds no records"):
        read_descriptions(write(tmp_path, "\n\n"))
    with pytest.raises(DescriptionsError, match="no such file"):
        read_descriptions(tmp_path / "absent.csv")


def test_bad_records_are_dropped_and_named_with_their_line(tmp_path):
    text = (b"ep1,1,Pororo skis.\n"
            b"ep1,2,Caf\xe9 time with Loopy.\n"  # Latin-1, not UTF-8: the only record of clip 2
            b"ep1,3,Crong naps.\n"
            b"ep1,3,Crong d\xe9teste the snow.\n"  # clip 3 keeps its other record
            b"ep1,4,   \n"
            b"ep1,x,Eddy builds.\n"
            b"ep1,5\n"
            b"ep1,6,Poby fishes.\n")
    table = read_descriptions(write(tmp_path, text))
    by_line = {p.line: p for p in table.problems}
    assert by_line[2].reason == "not UTF-8: byte 0xe9 in the description" and by_line[2].skipped == "clip"
    assert by_line[4].reason.startswith("not UTF-8") and by_line[4].skipped == "record"
    assert (by_line[5].reason, by_line[5].skipped) == ("empty description", "clip")
    assert by_line[6].reason.startswith("bad clip number: 'x'") and by_line[6].skipped == "record"
    assert by_line[7].reason.startswith("wrong number of fields")
    assert sorted(by_line) == [2, 4, 5, 6, 7]
    problems = {c.number: c.problem for c in table.clips}
    assert problems == {1: None, 2: "not UTF-8: byte 0xe9 in the description", 3: None, 4: "empty description",
                        6: None}


def test_bad_video_fields_make_the_clip_unusable(tmp_path):
    table = read_descriptions(write(tmp_path, "episode,clip,video,start,end,description\n"
                                              "e,1,a.mp4,abc,2,Pororo.\n"
                                              "e,2,a.mp4,3,2,Pororo.\n"
                                              "e,3,,0,1,Pororo.\n"
                                              "e,4,a.mp4,0,1,Pororo.\n"
                                              "e,4,b.mp4,0,1,Pororo again.\n"))
    problems = {c.number: c.problem for c in table.clips}
    assert problems[1] == "bad time range: start 'abc' is not a number of seconds"
    assert problems[2] == "bad time range: end 2 s is not after start 3 s"
    assert problems[3] == "no video path"
    assert problems[4] is None  # the conflicting second record is dropped, the clip keeps its first
    assert [p.line for p in table.problems if p.kind == "conflicting records"] == [6]


# -------------------------------------------------------------------------------------------------- characters


def test_characters_are_found_as_whole_words_in_any_case():
    detector = CharacterDetector(PORORO_CHARACTERS)
    names = dict(zip(PORORO_CHARACTERS, range(9)))

    def found(*texts):
        return {n for n, i in names.items() if detector.detect(texts)[i]}

    assert found("PORORO and crong's sled.") == {"Pororo", "Crong"}
    assert found("Pororos and Crongcrong and eddy-like toys") == {"Eddy"}  # hyphen ends a word
    assert found("Nobody is here.", "Harry sings.") == {"Harry"}
    custom = CharacterDetector(parse_character_list("Mr. Kim, Ann"))
    assert custom.detect(["mr. kim meets ANN"]).tolist() == [1, 1]
    assert custom.detect(["Mr. Kimchi, Anna"]).tolist() == [0, 0]
    labels, unknown = custom.from_names(["ann", "Bob"])
    assert labels.tolist() == [0, 1] and unknown == ["Bob"]
    with pytest.raises(Exception, match="same name"):
        parse_character_list("Ann,ann")


# ------------------------------------------------------------------------------------------- windows and splits


def test_windows_never_bridge_an_unusable_clip():
    episodes = {"a": list(range(0, 8)), "b": list(range(8, 11))}
    usable = [True] * 11
    usable[5] = False
    windows, left_out = story_windows(episodes, usable, length=3, stride=1)
    assert [w.clips for w in windows] == [(0, 1, 2), (1, 2, 3), (2, 3, 4), (8, 9, 10)]
    assert left_out == 3  # (3,4,5), (4,5,6), (5,6,7)
    windows, _ = story_windows(episodes, [True] * 11, length=3, stride=2)
    assert [w.clips[0] for w in windows] == [0, 2, 4, 8]


def test_split_sizes_and_options():
    assert episode_counts(183, (0.8, 0.1, 0.1)) == [147, 18, 18]
    assert episode_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert episode_counts(2, (0.8, 0.1, 0.1)) == [1, 1, 0]
    assert episode_counts(10, (1.0, 0.0, 0.0)) == [10, 0, 0]
    assert parse_split("0.7, 0.2,0.1") == (0.7, 0.2, 0.1)
    for bad in ("0.8,0.1", "0.5,0.5,0.5", "a,b,c", "0,0.5,0.5"):
        with pytest.raises(Exception, match="--split"):
            parse_split(bad)


def test_an_unbalanceable_split_reports_its_best_draw():
    # Only one episode shows the character: whichever split holds it differs from the others.
    sums = np.array([[10.0], [0.0], [0.0], [0.0]])
    result = split_episodes(["a", "b", "c", "d"], sums, np.full(4, 10.0), (0.5, 0.25, 0.25), seed=3,
                            tolerance=0.05, max_draws=5)
    assert not result.balanced and result.draws == 5
    assert result.imbalance == pytest.approx(0.5)  # the best: "a" in train with one other episode
    assert result.assignment["a"] == "train"


# ---------------------------------------------------------------------------------------------- frame choice


def test_frame_choice_is_uniform_and_depends_only_on_seed_and_clip():
    def choose(seed, key, frames, k):
        chooser = FrameChooser(seed, key, k)
        for index in range(frames):
            if chooser.offer():
                chooser.keep(index, index / 10, np.array([index]))
        return chooser.result()

    counts = np.zeros(10)
    for clip in range(3000):
        counts[choose(0, f"ep/{clip}", 10, 1).frame_index[0]] += 1
    assert counts.min() > 240 and counts.max() < 360  # 300 expected each; 6 standard deviations apart
    pool = choose(4, "ep/1", 50, 5)
    assert pool.frame_index.tolist() == sorted(set(pool.frame_index.tolist())) and len(pool.frame_index) == 5
    assert pool.images[:, 0].tolist() == pool.frame_index.tolist()
    assert choose(4, "ep/1", 50, 5).frame_index.tolist() == pool.frame_index.tolist()
    assert choose(5, "ep/1", 50, 5).frame_index.tolist() != pool.frame_index.tolist()
    # the story image is the first draw: one of the pool, and uniform on its own
    primary = np.zeros(10)
    for clip in range(3000):
        chosen = choose(1, f"e/{clip}", 10, 3)
        primary[chosen.frame_index[chosen.primary]] += 1
    assert primary.min() > 240 and primary.max() < 360


def test_the_logic_modules_load_neither_opencv_nor_torch():
    import subprocess
    import sys

    modules = "descriptions, characters, stories, sampling, report, resume, safe_npy, frames, builder, release"
    code = (f"import sys\nfrom sv_data.pororo import {modules}\n"
            "print(sorted(m for m in ('cv2', 'torch', 'sentence_transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
