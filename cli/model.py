"""``sv-model``: train, sample and evaluate story-visualization models on shards."""
from cli.common import command_group

COMMANDS = {
    "train": "cli.train:train",
    "generate": "cli.train:generate",
    "train-evaluator": "cli.evaluate:train_evaluator",
    "evaluate": "cli.evaluate:evaluate",
}

main = command_group(COMMANDS, "Train StoryGAN on a shard, generate stories, and evaluate them.")

if __name__ == "__main__":
    main()
