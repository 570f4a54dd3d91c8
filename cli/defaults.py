"""Settings of both command groups: every option's default can be overridden by an environment variable.

``SVKIT_<COMMAND>_<OPTION>``, e.g. ``SVKIT_BUILD_CLEVR_N_TRAIN=2`` or ``SVKIT_TRAIN_MAX_STEPS=10``: the command
the user types stays the same (the tests run the documented commands at tiny sizes this way), and an option given
on the command line still wins.
"""
ENV_PREFIX = "SVKIT"
CONTEXT = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX}
