"""``sv-data build-pororo``: Pororo-SV, or the same for any cartoon, from videos and per-clip descriptions.

The build runs in two phases, both resumable:

1. Frames. Workers take whole videos; each video is read once and every clip in it gets its frames drawn
   (:mod:`sv_data.pororo.video`). A finished video's frames go, atomically, into ``OUT/work/frames/``, so an
   interrupted build samples only the videos it had not finished. The texts are then encoded once
   (``OUT/work/conditions-*.npy``).
2. Stories. Windows of consecutive usable clips of one episode, split by episode (:mod:`sv_data.pororo.stories`),
   are written by :func:`sv_data.build.build` into ``OUT/<split>.h5``.

What could not be used goes into ``OUT/report.tsv``; ``OUT/work`` is removed when the build is complete.

With a Ray address both phases run on Ray actors (the texts are still encoded here). One job of an array
(``shard=(i, n)``) samples only the videos ``i, i+n, ...`` of the sorted video list and stops; the same build
without ``shard`` then finds every video cached and goes on to phase 2.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from sv_data.build import build, check_run_options
from sv_data.errors import SvkitError, require_at_least
from sv_data.pororo.characters import PORORO_CHARACTERS, CharacterDetector
from sv_data.pororo.descriptions import PORORO_QA, Clip, Descriptions, natural_key, read_descriptions
from sv_data.pororo.encoder import ENCODER_NAME, encode_cached
from sv_data.pororo.frames import SampleFiles, VideoTask, cached_outcome, run_sampling
from sv_data.pororo.report import REPORT_NAME, Problem, count_kinds, write_report
from sv_data.pororo.resume import claim_work_dir, finished_build
from sv_data.pororo.shard_job import CHUNK_SIZE, DATASET, MIN_IMAGE_SIZE, EncodedStoryJob
from sv_data.pororo.stories import SplitResult, Window, parse_split, split_episodes, story_windows
from sv_data.shards import SPLITS, ExtraSpec, ShardSpec, StoryBatch

VIDEO_SUFFIXES = (".gif", ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


@dataclass(frozen=True)
class PororoOptions:
    videos: Path
    descriptions: Path
    out: Path
    image_size: int = 64
    frames_per_clip: int = 1
    frames_per_story: int = 5
    stride: int = 1
    characters: tuple[str, ...] = PORORO_CHARACTERS
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    balance_tolerance: float = 0.05
    workers: int = 1
    progress: bool = True
    chunk_size: int = CHUNK_SIZE
    ray_address: str | None = None  # run both phases on Ray actors ("local" starts Ray here)
    shard: tuple[int, int] | None = None  # (i, n): sample only this job's share of the videos, then stop

    def check(self) -> None:
        """Every option, before anything is written (the frames are sampled with the workers before the stories
        are cut into chunks)."""
        require_at_least("--image-size", self.image_size, MIN_IMAGE_SIZE)
        for name in ("frames_per_clip", "frames_per_story", "stride"):
            require_at_least(f"--{name.replace('_', '-')}", getattr(self, name), 1)
        check_run_options(self.workers, self.chunk_size, self.shard)
        if not 0 <= self.balance_tolerance <= 1:
            raise SvkitError(f"--balance-tolerance must lie in 0..1, got {self.balance_tolerance}")
        parse_split(",".join(map(str, self.split)))
        if not Path(self.videos).is_dir():
            raise SvkitError(f"{self.videos}: no such folder (--videos)")


@dataclass
class BuildSummary:
    out: Path
    report: Path
    stories: dict[str, int]
    clips_total: int = 0
    clips_used: int = 0
    episodes_total: int = 0
    episodes_used: int = 0
    windows_left_out: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped_clip_reasons: list[str] = field(default_factory=list)
    balance: SplitResult | None = None
    label_names: tuple[str, ...] = ()
    tolerance: float = 0.05
    already_built: bool = False
    shard: tuple[int, int] | None = None  # set when this run was one job of an array: it only sampled frames
    videos_sampled: tuple[int, int] = (0, 0)  # (this job's share, all videos)

    def line(self) -> str:
        splits = ", ".join(f"{s} {n}" for s, n in self.stories.items())
        total = sum(self.stories.values())
        if self.shard is not None:
            mine, every = self.videos_sampled
            return (f"{self.out}: job {self.shard[0]} of {self.shard[1]} has sampled its {mine} of {every} videos "
                    f"into {self.out}/work; when every job is done, run the same command without --shard-index and "
                    "--num-shards to write the stories")
        if self.already_built:
            return f"{self.out}: already built with these options ({total} stories: {splits}); report {self.report}"
        in_splits = f" ({splits})" if splits else ""
        parts = [f"{DATASET}: {total} stories{in_splits} from {self.clips_used} of {self.clips_total} clips in "
                 f"{self.episodes_used} of {self.episodes_total} episodes"]
        skipped = []
        if self.skipped_clip_reasons:
            kinds = Counter(r.split(":", 1)[0] for r in self.skipped_clip_reasons)
            detail = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
            skipped.append(f"{len(self.skipped_clip_reasons)} clips ({detail})")
        for what in ("episode", "record", "character"):
            found = [p for p in self.problems if p.skipped == what]
            if found:
                skipped.append(f"{len(found)} {what}s ({count_kinds(found)})")
        parts.append("skipped " + ("; ".join(skipped) if skipped else "nothing"))
        if self.windows_left_out:
            parts.append(f"{self.windows_left_out} stories not made for want of a skipped clip")
        if self.balance is not None:
            verdict = "within" if self.balance.balanced else "NOT within"
            worst = self.label_names[self.balance.worst_label] if self.label_names else ""
            parts.append(f"label balance between splits {100 * self.balance.imbalance:.1f}% ({worst}), {verdict} "
                         f"{100 * self.tolerance:g}%")
        parts.append(f"report {self.report}")
        return "; ".join(parts)


def build_pororo(options: PororoOptions) -> BuildSummary:
    options.check()
    table = read_descriptions(options.descriptions)
    out = Path(options.out)
    config = _config(options, table)
    report_path = out / REPORT_NAME
    finished = finished_build(out, config)
    if finished is not None:
        return BuildSummary(out, report_path, finished, already_built=True)
    work = claim_work_dir(out, config)

    clips = list(table.clips)
    problems = list(table.problems)
    clip_problem: list[str | None] = [c.problem for c in clips]
    videos, video_problems = _resolve_videos(table, Path(options.videos), clip_problem)
    problems += video_problems
    detector = CharacterDetector(options.characters)
    labels, label_problems = _labels(clips, detector)
    problems += label_problems

    sampled = _sample_frames(clips, videos, clip_problem, options, work / "frames")
    if options.shard is not None:
        return BuildSummary(out, report_path, {}, shard=options.shard, videos_sampled=sampled.share)
    samples, sample_problems = sampled.samples, sampled.problems
    problems += sample_problems
    usable = [p is None for p in clip_problem]
    episodes = table.episodes()
    # Episodes without videos are reported as such: counting their stories as "not made" would only be noise.
    missing = {p.episode for p in video_problems if p.skipped == "episode"}
    present = {e: clips_of for e, clips_of in episodes.items() if e not in missing}
    windows, left_out = story_windows(present, usable, options.frames_per_story, options.stride)
    summary = BuildSummary(
        out, report_path, {}, clips_total=len(clips), clips_used=sum(usable), episodes_total=len(episodes),
        windows_left_out=left_out, problems=problems, label_names=detector.names, tolerance=options.balance_tolerance,
        skipped_clip_reasons=[p for p in clip_problem if p is not None and not p.startswith(_NO_EPISODE)],
    )
    if not windows:
        write_report(report_path, _sorted(problems), [summary.line()])
        raise SvkitError(
            f"{options.descriptions}: nothing usable is left: no {options.frames_per_story} consecutive usable clips "
            f"in any episode ({summary.clips_used} of {summary.clips_total} clips usable); see {report_path}"
        )

    used = sorted({c for w in windows for c in w.clips})
    texts = [clips[i].descriptions[0] for i in used]
    conditions_path = encode_cached(texts, work, options.progress)

    split = _split(windows, labels, options)
    by_split: dict[str, list[Window]] = {s: [] for s in SPLITS}
    for window in windows:
        by_split[split.assignment[window.episode]].append(window)
    row_of = {c: r for r, c in enumerate(used)}
    story_clips = [
        StoryClip(clips[i].episode, clips[i].number, videos[i], clips[i].descriptions, tuple(labels[i].tolist()),
                  *samples[i])
        for i in used
    ]
    job = PororoStoryJob(
        config=config,
        label_names=detector.names,
        clips=story_clips,
        windows={s: [tuple(row_of[c] for c in w.clips) for w in ws] for s, ws in by_split.items() if ws},
        conditions=str(Path(conditions_path).resolve()),  # Ray actors need not share this process's directory
    )
    sizes = {s: len(ws) for s, ws in job.stories_by_split.items()}
    build(job, out, sizes, workers=options.workers, chunk_size=options.chunk_size, progress=options.progress,
          desc="stories", ray_address=options.ray_address)

    summary.stories = sizes
    summary.episodes_used = len({w.episode for w in windows})
    summary.balance = split
    write_report(report_path, _sorted(problems), [summary.line(), _balance_note(split, detector.names)])
    shutil.rmtree(work, ignore_errors=True)
    return summary


# ----------------------------------------------------------------------------------------------- the options record

def _config(options: PororoOptions, table: Descriptions) -> dict:
    """Everything that changes the output, as stored in each shard and compared when a build resumes."""
    return {
        "dataset": DATASET,
        # The folder, resolved: the sampled frames in OUT/work are named by each video's path inside it, so a
        # build resumed with another --videos would otherwise silently reuse the frames of the old videos.
        "videos": Path(options.videos).resolve().as_posix(),
        "descriptions": Path(options.descriptions).name,
        "descriptions_sha256": table.sha256,
        "layout": table.layout,
        "image_size": options.image_size,
        "frames_per_clip": options.frames_per_clip,
        "frames_per_story": options.frames_per_story,
        "stride": options.stride,
        "characters": list(options.characters),
        "split": list(options.split),
        "seed": options.seed,
        "balance_tolerance": options.balance_tolerance,
        "encoder": ENCODER_NAME,
    }


# ------------------------------------------------------------------------------------------- clips and their videos

_NO_EPISODE = "episode without videos"


def _resolve_videos(
    table: Descriptions, videos_dir: Path, clip_problem: list[str | None]
) -> tuple[list[str], list[Problem]]:
    """Each clip's video, relative to ``videos_dir`` (POSIX form). Sets ``clip_problem`` where it is missing."""
    problems: list[Problem] = []
    videos = [c.video or "" for c in table.clips]
    if table.layout == PORORO_QA:
        folders = _episode_folders(videos_dir, set(table.episodes()))
        for episode, indices in table.episodes().items():
            folder = folders.get(episode)
            if folder is None:
                problems.append(Problem(f"{_NO_EPISODE}: no folder named {episode} under {videos_dir}",
                                        episode=episode, skipped="episode"))
                for i in indices:
                    clip_problem[i] = clip_problem[i] or _NO_EPISODE
                continue
            for i in indices:
                videos[i] = _clip_file(videos_dir, folder, table.clips[i].number)
    for i, clip in enumerate(table.clips):
        if clip_problem[i] is not None:
            continue
        if not (videos_dir / videos[i]).is_file():
            clip_problem[i] = f"video not found: no file {videos[i]} under {videos_dir}"
            problems.append(_clip_problem(clip, videos[i], clip_problem[i]))
    return videos, problems


def _episode_folders(videos_dir: Path, episodes: set[str]) -> dict[str, str]:
    """PororoQA keeps each episode's clips in a folder named after it (``<season>/<episode>/``, or one level in
    some copies): episode -> that folder, relative to ``videos_dir``."""
    found: dict[str, str] = {}
    for dirpath, dirnames, _ in os.walk(videos_dir):
        dirnames.sort()
        name = Path(dirpath).name
        if name in episodes and name not in found:
            found[name] = Path(dirpath).relative_to(videos_dir).as_posix()
    return found


def _clip_file(videos_dir: Path, folder: str, number: int) -> str:
    """``<folder>/<n>.gif`` as released; another video format of the same name if that is what is there."""
    for suffix in VIDEO_SUFFIXES:
        candidate = f"{folder}/{number}{suffix}"
        if (videos_dir / candidate).is_file():
            return candidate
    return f"{folder}/{number}.gif"


def _clip_problem(clip: Clip, video: str, reason: str) -> Problem:
    return Problem(reason, line=clip.line, episode=clip.episode, clip=clip.number, video=video, skipped="clip")


def _labels(clips: Sequence[Clip], detector: CharacterDetector) -> tuple[list[np.ndarray], list[Problem]]:
    labels, problems = [], []
    for clip in clips:
        if clip.characters is None:
            labels.append(detector.detect(clip.descriptions))
            continue
        found, unknown = detector.from_names(clip.characters)
        labels.append(found)
        problems += [
            Problem(f"unknown character: {name!r} is not one of {', '.join(detector.names)}", line=clip.line,
                    episode=clip.episode, clip=clip.number, video=clip.video or "", skipped="character")
            for name in unknown
        ]
    return labels, problems


# ---------------------------------------------------------------------------------------- phase 1: sampling frames

@dataclass
class Sampled:
    samples: dict[int, tuple[str, int]]  # clip index -> (cache file, row)
    problems: list[Problem]  # found in the videos
    share: tuple[int, int]  # (videos this run was to sample, all videos)


def _sample_frames(
    clips: Sequence[Clip], videos: Sequence[str], clip_problem: list[str | None], options: PororoOptions,
    cache_dir: Path,
) -> Sampled:
    """Sample every usable clip (or, for one job of an array, only the clips of its share of the videos)."""
    from sv_data.pororo.video import ClipRequest  # OpenCV: only when a build runs

    by_video: dict[str, list[int]] = {}
    for i, problem in enumerate(clip_problem):
        if problem is None:
            by_video.setdefault(videos[i], []).append(i)
    cache_dir = cache_dir.resolve()  # paths that Ray actors can follow whatever their working directory
    cache_dir.mkdir(parents=True, exist_ok=True)
    if options.shard is None:  # the jobs of an array run side by side: their files in progress are not stale
        for stale in cache_dir.glob(".*.tmp"):
            stale.unlink()
    videos_dir = Path(options.videos).resolve()
    tasks = [
        VideoTask(
            video=video,
            path=str(videos_dir / video),
            cache=str(cache_dir / f"{hashlib.sha1(video.encode('utf-8')).hexdigest()[:20]}.npz"),
            requests=tuple(ClipRequest(clips[i].key, clips[i].start, clips[i].end) for i in indices),
            frames_per_clip=options.frames_per_clip,
            image_size=options.image_size,
            seed=options.seed,
        )
        for video, indices in sorted(by_video.items())
    ]
    share = tasks if options.shard is None else tasks[options.shard[0]::options.shard[1]]
    outcomes: dict[str, list[str | None]] = {}
    todo = []
    for task in share:
        cached = cached_outcome(task)
        if cached is None:
            todo.append(task)
        else:
            outcomes[task.video] = cached
    total = sum(len(t.requests) for t in share)
    done = total - sum(len(t.requests) for t in todo)
    with tqdm(total=total, initial=done, unit="clip", desc="sampling frames", disable=not options.progress,
              dynamic_ncols=True) as bar:
        for video, problems in run_sampling(todo, options.workers, options.ray_address):
            outcomes[video] = problems
            bar.update(len(problems))

    samples: dict[int, tuple[str, int]] = {}
    found: list[Problem] = []
    if options.shard is not None:
        return Sampled(samples, found, (len(share), len(tasks)))
    for task in tasks:
        for row, (i, problem) in enumerate(zip(by_video[task.video], outcomes[task.video])):
            if problem is None:
                samples[i] = (task.cache, row)
            else:
                clip_problem[i] = problem
                found.append(_clip_problem(clips[i], task.video, problem))
    return Sampled(samples, found, (len(tasks), len(tasks)))


# ------------------------------------------------------------------------------------------- phase 2: the stories

def _split(windows: Sequence[Window], labels: Sequence[np.ndarray], options: PororoOptions) -> SplitResult:
    episodes = sorted({w.episode for w in windows}, key=natural_key)
    row = {e: i for i, e in enumerate(episodes)}
    label_sums = np.zeros((len(episodes), len(options.characters)))
    frame_counts = np.zeros(len(episodes))
    for window in windows:
        label_sums[row[window.episode]] += np.sum([labels[c] for c in window.clips], axis=0)
        frame_counts[row[window.episode]] += len(window.clips)
    return split_episodes(episodes, label_sums, frame_counts, options.split, options.seed, options.balance_tolerance)


@dataclass(frozen=True)
class StoryClip:
    """What the story writer needs of one clip (plain values: the job is pickled to each worker)."""

    episode: str
    number: int
    video: str
    descriptions: tuple[str, ...]
    labels: tuple[int, ...]
    cache: str  # the sampled-frames file of its video
    row: int  # its row there


class PororoStoryJob(EncodedStoryJob):
    """The :class:`sv_data.build.StoryJob` of phase 2: stories from the sampled frames and encoded texts. A story
    is a window: a tuple of rows of ``clips``."""

    def __init__(self, config: dict, label_names: tuple[str, ...], clips: list[StoryClip],
                 windows: dict[str, list[tuple[int, ...]]], conditions: str):
        super().__init__(config, windows, conditions)
        self.label_names = label_names
        self.clips = clips
        self.max_descriptions = max(len(c.descriptions) for c in clips)
        self._samples = SampleFiles()  # this build's, so never another build's files of the same names

    def __getstate__(self):
        return {**super().__getstate__(), "_samples": SampleFiles()}

    def spec(self, split: str) -> ShardSpec:
        t = self._config["frames_per_story"]
        extras = story_extras(t, self._config["frames_per_clip"], self._config["image_size"], self.max_descriptions)
        return self.shard_spec(split, t, self.label_names, extras)

    def batch(self, windows: Sequence[tuple[int, ...]]) -> StoryBatch:
        n, t = len(windows), self._config["frames_per_story"]
        k, size = self._config["frames_per_clip"], self._config["image_size"]
        pool = np.zeros((n, t, k, size, size, 3), dtype=np.uint8)
        pool_index = np.zeros((n, t, k), dtype=np.int64)
        pool_time = np.zeros((n, t, k), dtype=np.float64)
        primary = np.zeros((n, t), dtype=np.int64)
        descriptions = np.full((n, t, self.max_descriptions), "", dtype=object)
        for i, window in enumerate(windows):
            for j, c in enumerate(window):
                clip = self.clips[c]
                sampled = self._samples(clip.cache)
                pool[i, j] = sampled["images"][clip.row]
                pool_index[i, j] = sampled["frame_index"][clip.row]
                pool_time[i, j] = sampled["frame_time"][clip.row]
                primary[i, j] = sampled["primary"][clip.row]
                descriptions[i, j, :len(clip.descriptions)] = clip.descriptions
        rows, frames = np.arange(n)[:, None], np.arange(t)[None, :]
        clips = [[self.clips[c] for c in w] for w in windows]
        extra = {
            "episode": np.array([cs[0].episode for cs in clips], dtype=object),
            "clip": np.array([[c.number for c in cs] for cs in clips], dtype=np.int64),
            "video": np.array([[c.video for c in cs] for cs in clips], dtype=object),
            "frame_index": pool_index[rows, frames, primary],
            "frame_time": pool_time[rows, frames, primary],
            "descriptions": descriptions,
        }
        if k > 1:
            extra.update(frame_pool=pool, frame_pool_index=pool_index, frame_pool_time=pool_time)
        return StoryBatch(
            images=pool[rows, frames, primary],
            texts=[[c.descriptions[0] for c in cs] for cs in clips],
            story_ids=[f"{cs[0].episode}/{cs[0].number}" for cs in clips],
            labels=np.array([[c.labels for c in cs] for cs in clips], dtype=np.uint8),
            conditions=self.conditions_of(windows),
            extra=extra,
        )


def story_extras(frames: int, pool: int, size: int, descriptions: int) -> dict[str, ExtraSpec]:
    """The ``extra/`` arrays of a built Pororo-SV shard."""
    extras = {
        "episode": ExtraSpec((), "str", "episode of the story (first column of the description file)"),
        "clip": ExtraSpec((frames,), "int64", "clip number of each frame within its episode"),
        "video": ExtraSpec((frames,), "str", "video file of each frame, relative to the --videos folder"),
        "frame_index": ExtraSpec((frames,), "int64", "index (from 0) in its video of the frame stored in images"),
        "frame_time": ExtraSpec((frames,), "float64", "time (s) in its video of the frame stored in images"),
        "descriptions": ExtraSpec((frames, descriptions), "str",
                                  "every description of each clip in file order, padded with empty strings; "
                                  "texts holds the first"),
    }
    if pool > 1:
        extras.update(
            frame_pool=ExtraSpec((frames, pool, size, size, 3), "uint8",
                                 f"{pool} frames drawn uniformly from each clip, in time order; images holds one"),
            frame_pool_index=ExtraSpec((frames, pool), "int64", "index (from 0) in its video of each frame_pool frame"),
            frame_pool_time=ExtraSpec((frames, pool), "float64", "time (s) in its video of each frame_pool frame"),
        )
    return extras


# ------------------------------------------------------------------------------------------------------ reporting

def _sorted(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (natural_key(p.episode), -1 if p.clip is None else p.clip, p.line))


def _balance_note(split: SplitResult, names: Sequence[str]) -> str:
    frequencies = "; ".join(
        f"{s}: " + ", ".join(f"{n} {100 * f:.1f}%" for n, f in zip(names, freq)) for s, freq in
        split.frequencies.items()
    )
    return f"character frame frequencies by split (draws tried: {split.draws}): {frequencies}"
