"""CLEVR-SV: scenes and sentences are pure logic (:mod:`.scene`, :mod:`.descriptions`); only :mod:`.render` uses
Blender. :mod:`.job` ties them into a StoryJob for the build driver; :mod:`.importer` reads the StoryGAN release."""
