"""`python -m fer_experiments …`: the same as `fer-exp …`."""
from .cli import main

main()
