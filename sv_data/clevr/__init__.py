"""CLEVR-SV: scenes and sentences are pure logic (:mod:`.scene`, :mod:`.descriptions`); only :mod:`.render` uses
Blender. :mod:`.job` ties them into a StoryJob for the build driver; :mod:`.importer` reads the StoryGAN release."""

# Cycles samples per pixel of a build unless --samples says otherwise. With the denoiser, 16 keep the frames above
# 40 dB against 1024-sample renders (CLEVR's rubber and metal, each a mix of several shaders, are noisier than a
# single shader: 12 gave 39.5 dB) at more than 20 frames/s on two cores (docs/benchmarks.md).
DEFAULT_SAMPLES = 16
# Stories per part file unless --chunk-size says otherwise: small, so that small builds still spread over every worker.
CHUNK_SIZE = 10
