"""``python -m sv_model ...`` is ``sv-model ...`` (for launchers that start modules, such as torchrun)."""
from cli.model import main

main(prog_name="python -m sv_model")
