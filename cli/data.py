"""``sv-data``: build, import and look at story-visualization shards."""
from cli.common import command_group

COMMANDS = {
    "inspect": "cli.shard_commands:inspect",
    "validate": "cli.shard_commands:validate",
    "preview": "cli.shard_commands:preview",
    "merge": "cli.shard_commands:merge",
    "repack": "cli.shard_commands:repack",
    "build-clevr": "cli.clevr:build_clevr",
    "import-storygan-clevr": "cli.clevr:import_storygan_clevr",
    "build-pororo": "cli.pororo:build_pororo",
    "import-storygan-pororo": "cli.pororo:import_storygan_pororo",
    "export": "cli.export:export",
}

main = command_group(
    COMMANDS, "Build CLEVR-SV and Pororo-SV into HDF5 shards (format: docs/format.md), and inspect them."
)

if __name__ == "__main__":
    main()
