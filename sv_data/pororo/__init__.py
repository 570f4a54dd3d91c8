"""Pororo-SV: built from videos and clip descriptions (:mod:`.builder`), or imported from the circulated StoryGAN
release (:mod:`.release`). The modules for descriptions, characters, stories and frame choice are pure logic; only
:mod:`.video` uses OpenCV and only :mod:`.encoder` uses PyTorch."""
