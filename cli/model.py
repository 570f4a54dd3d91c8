"""``sv-model``: train, sample and evaluate story-visualization models on shards."""
import click

from cli.common import LazyGroup
from cli.defaults import CONTEXT

COMMANDS = {
    "train": "cli.train:train",
    "generate": "cli.train:generate",
    "train-evaluator": "cli.evaluate:train_evaluator",
    "evaluate": "cli.evaluate:evaluate",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT)
@click.version_option(package_name="svkit")
def main():
    """Train StoryGAN on a shard, generate stories, and evaluate them."""


if __name__ == "__main__":
    main()
