"""``sv-data export``: shards into the layouts that other story-visualization code reads (docs/export.md).

One module per format, each with ``export(shards, out, progress) -> ExportSummary``; :mod:`.common` holds what
they share. Nothing here imports torch, and only :mod:`.hf` needs pyarrow.
"""
FORMATS = {
    "pororo-sv-release": "sv_data.export.pororo_release",
    "storygan-clevr": "sv_data.export.storygan_clevr",
    "hf": "sv_data.export.hf",
}
