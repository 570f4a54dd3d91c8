"""Pororo-SV: built from videos and clip descriptions (:mod:`.builder`), or imported from the release that
StoryGAN's successors circulate (:mod:`.release`); both write stories through the StoryJob base of
:mod:`.shard_job`.

Pure logic, free of OpenCV and PyTorch: :mod:`.descriptions` (the two CSV layouts), :mod:`.characters`,
:mod:`.stories` (windows and DuCo-balanced splits), :mod:`.sampling` (which frames of a clip), :mod:`.report`,
:mod:`.resume`, :mod:`.safe_npy` (the restricted unpickler). :mod:`.frames` runs the sampling of videos in
worker processes; only :mod:`.video` uses OpenCV and only :mod:`.encoder` uses PyTorch (through
sentence-transformers). :mod:`.toy` writes a tiny made-up show to try a build.
"""
