"""What ``sv-model train`` takes, with its defaults, and the checks of those values (plain Python: the command line
reads its defaults from here without importing PyTorch)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from sv_data.errors import SvkitError

DEFAULT_EPOCHS = 120
DEFAULT_IMAGE_SIZE = 64
# torch.compile's mode for the training step's phases: CUDA graphs replay each phase's kernels in one launch
# (docs/training.md, "Speed"). On a CPU it is the same as the default mode.
COMPILE_MODE = "reduce-overhead"


@dataclass(frozen=True)
class Hyperparameters:
    """The optimisation settings of :class:`sv_model.trainer.Trainer` and the weights of :mod:`sv_model.loss`: the
    official StoryGAN code's values (docs/training.md, "The recipe")."""

    lr: float = 2e-4
    lr_decay_epochs: int = 20  # the learning rate halves every this many epochs
    g_updates: int = 2
    # The official code adds the KL terms of its two streams; svkit averages them, so twice the weight is the same sum.
    kl_weight: float = 2.0
    d_label_weight: float = 1.0  # the image discriminator's label loss on real frames
    g_label_weight: float = 0.4  # the generator's label loss on its frames


@dataclass(frozen=True)
class Preset:
    """The sizes that ``--preset`` sets at once; an option given explicitly overrides its preset value."""

    title: str  # the first line of ``sv-model train`` names the recipe so
    g_width: int
    d_width: int
    story_batch: int
    image_batch: int


PRESETS = {
    # GF_DIM 192, DF_DIM 96 and IM_BATCH_SIZE = ST_BATCH_SIZE = 24 of the official code's cfg/clevr.yml.
    "official": Preset("official StoryGAN CLEVR-SV configuration", g_width=192, d_width=96, story_batch=24,
                       image_batch=24),
    "small": Preset("small preset for CPU runs and the demo (not the official sizes)", g_width=32, d_width=32,
                    story_batch=8, image_batch=16),
}
DEFAULT_PRESET = "official"
PRESET_OPTIONS = tuple(f.name for f in fields(Preset) if f.name != "title")


@dataclass
class TrainOptions:
    """Everything ``sv-model train`` takes. See docs/training.md for what each option does. The sizes that are
    None are the preset's (:data:`PRESETS`), filled in when the options are made."""

    train: str
    out: str
    val: str | None = None
    evaluator: str | None = None  # scores --val (its F1 picks best.pt): a folder, a packaged name, none; None: packaged
    epochs: int | None = None  # DEFAULT_EPOCHS when max_steps is not given either
    max_steps: int | None = None
    max_minutes: float | None = None  # stop, with a checkpoint, once the loop has run this long
    device: str = "auto"
    compile: bool | None = None  # None: as compiles() says for the device
    model: str = "storygan"
    image_size: int | None = None  # None: DEFAULT_IMAGE_SIZE, and the shard must hold frames of that size
    preset: str = DEFAULT_PRESET
    g_width: int | None = None
    d_width: int | None = None
    noise_dim: int = 100
    story_dim: int | None = None  # None: as large as the frame condition the networks see (networks.ModelConfig)
    story_batch: int | None = None
    image_batch: int | None = None
    lr: float = Hyperparameters.lr
    lr_decay_epochs: int = Hyperparameters.lr_decay_epochs
    g_updates: int = Hyperparameters.g_updates
    kl_weight: float = Hyperparameters.kl_weight
    d_label_weight: float = Hyperparameters.d_label_weight
    g_label_weight: float = Hyperparameters.g_label_weight
    labels_in_condition: bool | None = None  # None: as the shard says (Pororo-SV: yes)
    seed: int = 0
    workers: int | None = None  # per stream; None: sv_model.data.default_workers()
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 10
    keep: int = 3
    val_stories: int = 256
    sample_stories: int = 4
    progress: bool = True

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise SvkitError(f"--preset {self.preset}: must be one of {', '.join(PRESETS)}")
        for name in PRESET_OPTIONS:
            if getattr(self, name) is None:
                setattr(self, name, getattr(PRESETS[self.preset], name))

    def compiles(self, device_type: str) -> bool:
        """Whether the step is compiled on a device of this type: as ``--compile/--no-compile`` says, else on a GPU,
        where the compiled step pays for its warm-up within a few hundred steps, and not on a CPU, where the
        warm-up outlasts the short runs that a CPU trains (docs/training.md, "Speed")."""
        return device_type == "cuda" if self.compile is None else self.compile

    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(**{f.name: getattr(self, f.name) for f in fields(Hyperparameters)})

    def recipe(self, story_state: int) -> str:
        """The first line of a run: the preset, the options that changed it, and the values that shape training
        (``story_state``: the size the model's story state has, which ``story_dim`` None takes from the shard)."""
        preset_values = TrainOptions(self.train, self.out, preset=self.preset)
        changed = " ".join(f"{_option(name)} {getattr(self, name)}" for name in RECIPE_OPTIONS
                           if getattr(self, name) != getattr(preset_values, name))
        return (
            f"recipe: {PRESETS[self.preset].title}{' with ' + changed if changed else ''}: widths G {self.g_width} / "
            f"D {self.d_width}, noise {self.noise_dim}, story state {story_state}, batches {self.story_batch} "
            f"stories + {self.image_batch} frames, label-loss weights D {self.d_label_weight:g} / G "
            f"{self.g_label_weight:g}, KL weight {self.kl_weight:g}, lr {self.lr:g} halved every "
            f"{self.lr_decay_epochs} epochs, {self.g_updates} G updates per D update"
        )

    def check(self) -> None:
        """Refuse a value that training cannot use: one line naming the option, before anything is written."""
        from sv_model.networks import MODELS

        if self.model not in MODELS:
            raise SvkitError(f"--model {self.model}: must be one of {', '.join(MODELS)}")
        if self.epochs is not None and self.max_steps is not None:
            raise SvkitError("give --epochs or --max-steps, not both")
        if self.evaluator not in (None, "none") and self.val is None:
            raise SvkitError("--evaluator scores the validation stories: give --val too")
        at_least = {
            # The wrong-condition term pairs each sample with another one's condition: batches hold two or more.
            "story_batch": 2, "image_batch": 2, "g_updates": 1, "lr_decay_epochs": 1, "checkpoint_every": 1,
            "sample_every": 1, "log_every": 1, "keep": 1, "val_stories": 1, "sample_stories": 1, "noise_dim": 1,
            "g_width": 2, "d_width": 2, "story_dim": 1, "epochs": 1, "max_steps": 1, "workers": 0,
        }
        for name, minimum in at_least.items():
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise SvkitError(f"{_option(name)} {value}: must be at least {minimum}")
        for name in ("lr", "max_minutes"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SvkitError(f"{_option(name)} {value}: must be a number > 0")
        for name in ("kl_weight", "d_label_weight", "g_label_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SvkitError(f"{_option(name)} {value}: must be a number >= 0")
        size = self.image_size
        if size is not None and (size < 8 or size & (size - 1)):
            raise SvkitError(f"--image-size {size}: must be a power of two, at least 8")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


# What the recipe line reports and compares with the preset's values.
RECIPE_OPTIONS = (*PRESET_OPTIONS, "noise_dim", "story_dim", *(f.name for f in fields(Hyperparameters)))

# Options that may differ when a run is resumed: how long, where, how often to log and save; not what is trained.
RESUMABLE_CHANGES = frozenset({
    "train", "val", "out", "epochs", "max_steps", "max_minutes", "device", "compile", "workers", "checkpoint_every",
    "sample_every", "log_every", "keep", "val_stories", "sample_stories", "progress",
})
