"""`python -m fer_experiments.cli …`: the same as `fer-exp …`."""
from . import main

main()
