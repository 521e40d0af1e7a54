"""`python -m producer` runs the `segq` command (for machines without the console script)."""

from producer.cli import main

main()
