"""CLEVR-SV: scenes and sentences are pure logic (:mod:`.scene`, :mod:`.descriptions`); only :mod:`.render` uses
Blender. :mod:`.job` ties them into a StoryJob for the build driver; :mod:`.importer` reads the StoryGAN release."""

# Cycles samples per pixel of a build unless --samples says otherwise. With the denoiser, 12 keep the frames above
# 40 dB against 1024-sample renders at the speed that the 15 frames/s on two cores asks (docs/benchmarks.md).
DEFAULT_SAMPLES = 12
# Stories per part file unless --chunk-size says otherwise: small, so that small builds still spread over every worker.
CHUNK_SIZE = 10
